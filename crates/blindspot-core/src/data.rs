//! Where training batches come from: a small host-side trait that any slice store (for
//! example blindspot-io's slice cache, through an adapter in the runner) can implement.

use burn::tensor::backend::Backend;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::model::Batch;

/// A random-access set of equally sized 2-D slices with brain masks, on the host.
pub trait SliceSource {
    /// Number of slices.
    fn len(&self) -> usize;

    /// Whether there is no slice.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slice height and width.
    fn shape(&self) -> [usize; 2];

    /// Writes slice `index` into `image` and its mask (1 inside the brain, 0 outside) into
    /// `mask`; both have `h * w` values.
    ///
    /// # Errors
    /// A message saying why the slice could not be read.
    fn read(&self, index: usize, image: &mut [f32], mask: &mut [f32]) -> Result<(), String>;
}

/// Slices held in memory.
#[derive(Debug, Clone)]
pub struct InMemorySlices {
    shape: [usize; 2],
    images: Vec<f32>,
    masks: Vec<f32>,
}

impl InMemorySlices {
    /// Slices from row-major `[n, h, w]` buffers of images and masks.
    ///
    /// # Errors
    /// [`Error::BatchShape`] when the buffers do not hold a whole number of `h * w` slices or
    /// differ in length.
    pub fn new(images: Vec<f32>, masks: Vec<f32>, [h, w]: [usize; 2]) -> Result<Self> {
        let hw = h * w;
        let n = images.len().checked_div(hw).unwrap_or(0);
        for (what, got) in [("images", images.len()), ("masks", masks.len())] {
            if hw == 0 || got != n * hw || got == 0 {
                return Err(Error::BatchShape {
                    what,
                    expected: n.max(1) * hw,
                    got,
                    shape: [n, 1, h, w],
                });
            }
        }
        Ok(Self {
            shape: [h, w],
            images,
            masks,
        })
    }
}

impl SliceSource for InMemorySlices {
    fn len(&self) -> usize {
        self.images.len() / (self.shape[0] * self.shape[1])
    }

    fn shape(&self) -> [usize; 2] {
        self.shape
    }

    fn read(&self, index: usize, image: &mut [f32], mask: &mut [f32]) -> Result<(), String> {
        let hw = self.shape[0] * self.shape[1];
        if index >= self.len() {
            return Err(format!("index {index} out of range 0..{}", self.len()));
        }
        image.copy_from_slice(&self.images[index * hw..(index + 1) * hw]);
        mask.copy_from_slice(&self.masks[index * hw..(index + 1) * hw]);
        Ok(())
    }
}

/// Reads the slices `indices` of `source` into a batch on `device`.
///
/// # Errors
/// [`Error::Data`] when the source fails on a slice.
pub fn load_batch<B: Backend, S: SliceSource + ?Sized>(
    source: &S,
    indices: &[usize],
    device: &B::Device,
) -> Result<Batch<B>> {
    let [h, w] = source.shape();
    let hw = h * w;
    let mut images = vec![0f32; indices.len() * hw];
    let mut masks = vec![0f32; indices.len() * hw];
    for (k, &index) in indices.iter().enumerate() {
        source
            .read(
                index,
                &mut images[k * hw..(k + 1) * hw],
                &mut masks[k * hw..(k + 1) * hw],
            )
            .map_err(|message| Error::Data { index, message })?;
    }
    Batch::from_host(images, masks, [indices.len(), h, w], device)
}

/// The order of slices in epoch `epoch` of a run with seed `seed`: a permutation that depends
/// only on the two, so a resumed run sees the same batches as an uninterrupted one.
pub fn epoch_order(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch.wrapping_add(1));
    order.shuffle(&mut rng);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(50, 7, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(50, 7, 0));
        assert_ne!(a, epoch_order(50, 7, 1));
        assert_ne!(a, epoch_order(50, 8, 0));
    }

    #[test]
    fn in_memory_rejects_ragged_buffers() {
        assert!(InMemorySlices::new(vec![0.0; 10], vec![0.0; 10], [2, 2]).is_err());
        assert!(InMemorySlices::new(vec![0.0; 8], vec![0.0; 4], [2, 2]).is_err());
        let s = InMemorySlices::new(vec![1.0; 8], vec![0.0; 8], [2, 2]).unwrap();
        assert_eq!(s.len(), 2);
        let (mut i, mut m) = ([0.0; 4], [0.0; 4]);
        assert!(s.read(2, &mut i, &mut m).is_err());
        s.read(1, &mut i, &mut m).unwrap();
        assert_eq!(i, [1.0; 4]);
    }
}
