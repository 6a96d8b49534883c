//! Anomaly-map post-processing: brain-mask erosion, median filtering, connected components.
//!
//! Images are flat row-major buffers (last axis fastest) with `dims = [h, w]` (2-D) or
//! `[d, h, w]` (3-D).
//!
//! - [`erode`]: binary erosion repeated `iterations` times with the face-connected cross
//!   (4-connected in 2-D, 6-connected in 3-D; scipy's default structure) or the full square /
//!   cube, outside the image counting as background (scipy's `border_value=0`).
//! - [`median_filter`]: `k x k` (2-D) or `k x k x k` (3-D) median with PyTorch's reflect
//!   padding, which mirrors without repeating the edge (`a b c d` padded by 2 is
//!   `c b | a b c d | c b`), as the paper's `MedianPool2d`.
//! - [`label_components`] / [`remove_small_components`]: connected components (face or full
//!   connectivity) and removal of those smaller than a minimum size.

use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};
use crate::score::Score;

/// Which neighbours touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Connectivity {
    /// Neighbours share a face: 4 in 2-D, 6 in 3-D (the cross).
    Face,
    /// Neighbours share a face, edge or corner: 8 in 2-D, 26 in 3-D.
    Full,
}

/// `[d, h, w]` of a 2-D (`d = 1`) or 3-D image, checked against the buffer length.
fn grid(dims: &[usize], len: usize) -> Result<[usize; 3]> {
    let g = match *dims {
        [h, w] => [1, h, w],
        [d, h, w] => [d, h, w],
        _ => {
            return Err(MetricsError::Shape {
                dims: dims.to_vec(),
                len,
                allowed: "dims must be [h, w] or [d, h, w]",
            });
        }
    };
    if g.iter().product::<usize>() != len || g.contains(&0) {
        return Err(MetricsError::Shape {
            dims: dims.to_vec(),
            len,
            allowed: "the product of the (non-zero) dims must equal the buffer length",
        });
    }
    Ok(g)
}

/// Neighbour offsets `(dz, dy, dx)` for the connectivity, in 2-D when `d == 1`.
fn offsets(conn: Connectivity, two_d: bool) -> Vec<[isize; 3]> {
    let zs: &[isize] = if two_d { &[0] } else { &[-1, 0, 1] };
    let mut out = Vec::new();
    for &dz in zs {
        for dy in -1..=1isize {
            for dx in -1..=1isize {
                let nonzero = [dz, dy, dx].iter().filter(|&&v| v != 0).count();
                let keep = match conn {
                    Connectivity::Face => nonzero == 1,
                    Connectivity::Full => nonzero >= 1,
                };
                if keep {
                    out.push([dz, dy, dx]);
                }
            }
        }
    }
    out
}

#[inline]
fn step(g: [usize; 3], p: [usize; 3], o: [isize; 3]) -> Option<usize> {
    let z = p[0].checked_add_signed(o[0]).filter(|&z| z < g[0])?;
    let y = p[1].checked_add_signed(o[1]).filter(|&y| y < g[1])?;
    let x = p[2].checked_add_signed(o[2]).filter(|&x| x < g[2])?;
    Some((z * g[1] + y) * g[2] + x)
}

/// Binary erosion of `mask`, `iterations` times, with the given structuring element; pixels
/// outside the image count as background, so the border erodes (scipy `binary_erosion` with
/// `border_value=0`). The paper erodes the 2-D brain mask 3 times with [`Connectivity::Face`].
///
/// # Errors
/// [`MetricsError::Shape`] when `dims` does not fit the buffer.
pub fn erode(
    mask: &[bool],
    dims: &[usize],
    iterations: usize,
    conn: Connectivity,
) -> Result<Vec<bool>> {
    let g = grid(dims, mask.len())?;
    let offs = offsets(conn, g[0] == 1);
    let mut cur = mask.to_vec();
    let mut next = vec![false; mask.len()];
    for _ in 0..iterations {
        for z in 0..g[0] {
            for y in 0..g[1] {
                for x in 0..g[2] {
                    let i = (z * g[1] + y) * g[2] + x;
                    next[i] = cur[i]
                        && offs
                            .iter()
                            .all(|&o| step(g, [z, y, x], o).is_some_and(|j| cur[j]));
                }
            }
        }
        std::mem::swap(&mut cur, &mut next);
    }
    Ok(cur)
}

/// PyTorch reflect index: mirror about the edge without repeating it (`pad < n` checked).
#[inline]
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let r = if i < 0 {
        -i
    } else if i >= n {
        2 * (n - 1) - i
    } else {
        i
    };
    r as usize
}

/// Median filter with a `k x k` window in 2-D or `k x k x k` in 3-D, reflect padding as
/// PyTorch's `F.pad(mode="reflect")` (the paper's `MedianPool2d(5, padding=2)`), the exact
/// middle of the `k^2` / `k^3` values.
///
/// # Errors
/// [`MetricsError::InvalidParameter`] unless `k` is odd; [`MetricsError::Shape`] when `dims`
/// does not fit or an axis is not longer than `k / 2` (reflect padding needs `pad < n`, as in
/// PyTorch); [`MetricsError::NanScore`] for a NaN value.
pub fn median_filter<S: Score>(data: &[S], dims: &[usize], k: usize) -> Result<Vec<S>> {
    if k.is_multiple_of(2) {
        return Err(MetricsError::invalid(
            "k",
            k,
            "an odd window size (1, 3, 5, ...)",
        ));
    }
    let g = grid(dims, data.len())?;
    let pad = k / 2;
    let two_d = dims.len() == 2;
    let axes = if two_d { &g[1..] } else { &g[..] };
    if axes.iter().any(|&n| n <= pad) {
        return Err(MetricsError::Shape {
            dims: dims.to_vec(),
            len: data.len(),
            allowed: "every filtered axis must be longer than k / 2 (reflect padding)",
        });
    }
    if let Some(index) = data.iter().position(|v| v.is_nan()) {
        return Err(MetricsError::NanScore { index });
    }
    let keys: Vec<S::Key> = data.iter().map(|v| v.to_key()).collect();
    // Reflected source index of every padded position, per axis (padded i -> i - pad).
    let table = |n: usize, p: usize| -> Vec<usize> {
        (0..n + 2 * p)
            .map(|i| reflect(i as isize - p as isize, n))
            .collect()
    };
    let pz = if two_d { 0 } else { pad };
    let (tz, ty, tx) = (table(g[0], pz), table(g[1], pad), table(g[2], pad));
    let mut window = Vec::with_capacity(k * k * if two_d { 1 } else { k });
    let mut out = Vec::with_capacity(data.len());
    for z in 0..g[0] {
        for y in 0..g[1] {
            for x in 0..g[2] {
                window.clear();
                for &zz in &tz[z..=z + 2 * pz] {
                    for &yy in &ty[y..y + k] {
                        let row = &keys[(zz * g[1] + yy) * g[2]..][..g[2]];
                        window.extend(tx[x..x + k].iter().map(|&xx| row[xx]));
                    }
                }
                let mid = window.len() / 2;
                let (_, m, _) = window.select_nth_unstable(mid);
                out.push(S::from_key(*m));
            }
        }
    }
    Ok(out)
}

/// Connected components of a binary image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Components {
    /// Label of each pixel: 0 for background, `1..=count` for the components, numbered in
    /// raster order of their first pixel.
    pub labels: Vec<u32>,
    /// Size in pixels of component `i + 1`.
    pub sizes: Vec<usize>,
}

/// Labels the connected components of `mask`.
///
/// # Errors
/// [`MetricsError::Shape`] when `dims` does not fit the buffer.
pub fn label_components(mask: &[bool], dims: &[usize], conn: Connectivity) -> Result<Components> {
    let g = grid(dims, mask.len())?;
    let offs = offsets(conn, g[0] == 1);
    let mut labels = vec![0u32; mask.len()];
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || labels[start] != 0 {
            continue;
        }
        let label = sizes.len() as u32 + 1;
        labels[start] = label;
        stack.push(start);
        let mut size = 0;
        while let Some(i) = stack.pop() {
            size += 1;
            let p = [i / (g[1] * g[2]), (i / g[2]) % g[1], i % g[2]];
            for &o in &offs {
                if let Some(j) = step(g, p, o)
                    && mask[j]
                    && labels[j] == 0
                {
                    labels[j] = label;
                    stack.push(j);
                }
            }
        }
        sizes.push(size);
    }
    Ok(Components { labels, sizes })
}

/// `mask` without the connected components smaller than `min_size` pixels.
///
/// # Errors
/// [`MetricsError::Shape`] when `dims` does not fit the buffer.
pub fn remove_small_components(
    mask: &[bool],
    dims: &[usize],
    conn: Connectivity,
    min_size: usize,
) -> Result<Vec<bool>> {
    let c = label_components(mask, dims, conn)?;
    Ok(c.labels
        .iter()
        .map(|&l| l != 0 && c.sizes[l as usize - 1] >= min_size)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses rows of `#`/`.` into a mask.
    fn mask(rows: &[&str]) -> Vec<bool> {
        rows.iter()
            .flat_map(|r| r.chars().map(|c| c == '#'))
            .collect()
    }

    #[test]
    fn erosion_matches_hand_made_cross_case() {
        let m = mask(&[
            "######", //
            "######", //
            "######", //
            "######", //
            "###...", //
        ]);
        // One cross erosion: the border goes (zero border), and the pixel above the hole.
        let e = erode(&m, &[5, 6], 1, Connectivity::Face).unwrap();
        let expected = mask(&[
            "......", //
            ".####.", //
            ".####.", //
            ".##...", //
            "......", //
        ]);
        assert_eq!(e, expected);
        let e2 = erode(&m, &[5, 6], 2, Connectivity::Face).unwrap();
        let expected2 = mask(&[
            "......", //
            "......", //
            "..#...", //
            "......", //
            "......", //
        ]);
        assert_eq!(e2, expected2);
        // The full square element also needs the diagonal (4,3), so (3,2) goes too.
        let f = erode(&m, &[5, 6], 1, Connectivity::Full).unwrap();
        let expected_full = mask(&[
            "......", //
            ".####.", //
            ".####.", //
            ".#....", //
            "......", //
        ]);
        assert_eq!(f, expected_full);
        assert_eq!(erode(&m, &[5, 6], 0, Connectivity::Face).unwrap(), m);
        assert!(erode(&m, &[5, 5], 1, Connectivity::Face).is_err());
    }

    #[test]
    fn erosion_3d_uses_six_neighbours() {
        // 3x3x3 full cube: after one 6-connected erosion only the centre survives.
        let cube = vec![true; 27];
        let e = erode(&cube, &[3, 3, 3], 1, Connectivity::Face).unwrap();
        let mut expected = vec![false; 27];
        expected[13] = true;
        assert_eq!(e, expected);
    }

    #[test]
    fn reflect_padding_excludes_the_edge() {
        // a b c d padded by 2 -> c b | a b c d | c b
        let idx: Vec<usize> = (-2..6).map(|i| reflect(i, 4)).collect();
        assert_eq!(idx, vec![2, 1, 0, 1, 2, 3, 2, 1]);
    }

    #[test]
    fn median_hand_made_cases() {
        // Rows: 1 2 3 / 4 100 6 / 7 8 9. Centre window: median of all = 6.
        let img = [1.0f32, 2.0, 3.0, 4.0, 100.0, 6.0, 7.0, 8.0, 9.0];
        let out = median_filter(&img, &[3, 3], 3).unwrap();
        assert_eq!(out[4], 6.0);
        // Corner (0,0): reflect gives rows 1,0,1 and cols 1,0,1:
        // [100 4 100; 2 1 2; 100 4 100] -> sorted 1 2 2 4 4 100 100 100 100 -> median 4.
        assert_eq!(out[0], 4.0);
        // An isolated spike in a flat 5x5 map disappears with k = 5.
        let mut flat = vec![0.5f64; 25];
        flat[12] = 9.0;
        let out = median_filter(&flat, &[5, 5], 5).unwrap();
        assert!(out.iter().all(|&v| v == 0.5));
        // k = 1 is the identity.
        assert_eq!(median_filter(&img, &[3, 3], 1).unwrap(), img.to_vec());
        assert!(median_filter(&img, &[3, 3], 2).is_err());
        assert!(median_filter(&img, &[3, 3], 7).is_err()); // pad 3 >= 3
        assert!(median_filter(&[f32::NAN; 9], &[3, 3], 3).is_err());
    }

    #[test]
    fn median_3d_uses_the_cube() {
        // 3x3x3 with a plane of 1s at z = 0 (9 of 27); centre voxel: window is the whole
        // volume, median of 9 ones and 18 zeros = 0. Voxel (0,1,1): reflect z gives planes
        // 1,0,1 -> 9 ones of 27 -> 0. With two planes of ones (z = 0, 1), the centre sees
        // 18 ones -> 1.
        let mut v = vec![0.0f64; 27];
        v[..9].fill(1.0);
        let out = median_filter(&v, &[3, 3, 3], 3).unwrap();
        assert_eq!(out[13], 0.0);
        v[9..18].fill(1.0);
        let out = median_filter(&v, &[3, 3, 3], 3).unwrap();
        assert_eq!(out[13], 1.0);
        // 2-D filtering of the same buffer as 9 x 3 would differ: dims decide.
        assert_eq!(median_filter(&v, &[9, 3], 3).unwrap().len(), 27);
    }

    #[test]
    fn components_and_min_size() {
        let m = mask(&[
            "##..#", //
            "#...#", //
            "..#..", //
            "...##", //
        ]);
        let face = label_components(&m, &[4, 5], Connectivity::Face).unwrap();
        assert_eq!(face.sizes, vec![3, 2, 1, 2]);
        let full = label_components(&m, &[4, 5], Connectivity::Full).unwrap();
        // The diagonal touch (2,2)-(3,3) joins those two components.
        assert_eq!(full.sizes, vec![3, 2, 3]);
        assert_eq!(full.labels[0], 1);
        assert_eq!(full.labels[4], 2);
        let kept = remove_small_components(&m, &[4, 5], Connectivity::Face, 2).unwrap();
        let expected = mask(&[
            "##..#", //
            "#...#", //
            ".....", //
            "...##", //
        ]);
        assert_eq!(kept, expected);
        // 3-D: two voxels stacked in z are one 6-connected component.
        let mut v = vec![false; 8];
        v[0] = true;
        v[4] = true;
        let c = label_components(&v, &[2, 2, 2], Connectivity::Face).unwrap();
        assert_eq!(c.sizes, vec![2]);
        v[4] = false;
        v[7] = true; // corner-diagonal: only Full joins it
        assert_eq!(
            label_components(&v, &[2, 2, 2], Connectivity::Face)
                .unwrap()
                .sizes
                .len(),
            2
        );
        assert_eq!(
            label_components(&v, &[2, 2, 2], Connectivity::Full)
                .unwrap()
                .sizes,
            vec![2]
        );
    }

    #[test]
    fn median_matches_explicitly_padded_image() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (h, w, k) = (7usize, 9usize, 5usize);
        let img: Vec<f64> = (0..h * w).map(|_| rng.random::<f64>()).collect();
        // Build the reflect-padded image row by row, then take plain window medians.
        let p = k / 2;
        let pad_row = |r: &[f64]| -> Vec<f64> {
            let mut out: Vec<f64> = (1..=p).rev().map(|i| r[i]).collect();
            out.extend_from_slice(r);
            out.extend((1..=p).map(|i| r[r.len() - 1 - i]));
            out
        };
        let rows: Vec<Vec<f64>> = img.chunks(w).map(pad_row).collect();
        let mut padded: Vec<Vec<f64>> = (1..=p).rev().map(|i| rows[i].clone()).collect();
        padded.extend(rows.iter().cloned());
        padded.extend((1..=p).map(|i| rows[h - 1 - i].clone()));
        let out = median_filter(&img, &[h, w], k).unwrap();
        for y in 0..h {
            for x in 0..w {
                let mut win: Vec<f64> = (0..k)
                    .flat_map(|dy| padded[y + dy][x..x + k].to_vec())
                    .collect();
                win.sort_by(f64::total_cmp);
                assert_eq!(out[y * w + x], win[win.len() / 2], "({y}, {x})");
            }
        }
    }
}
