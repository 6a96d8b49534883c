//! The report's slice grids ([`slice_grid`]): input, reconstruction or map, residual and
//! segmentation of the example slices that inference kept.

use std::path::Path;

use blindspot_report::{
    GrayImage, GridKind, GridRow, SliceGrid, SliceGridRef, write_slice_grid_with,
};

use crate::error::{Result, create_dir};
use crate::inference::SetData;

/// Draws the set's example slices (input, reconstruction, residual, ground truth, prediction
/// at the threshold) to `grids/<set>.png`.
pub(crate) fn slice_grid(
    dir: &Path,
    set: &SetData,
    ood: bool,
    threshold: f64,
    [h, w]: [usize; 2],
) -> Result<Option<SliceGridRef>> {
    if set.examples.is_empty() {
        return Ok(None);
    }
    let image = |data: &[f32]| GrayImage {
        width: w,
        height: h,
        data: data.to_vec(),
    };
    let lesional = set
        .examples
        .iter()
        .any(|e| e.lesion.iter().any(|&v| v > 0.0));
    let rows = set
        .examples
        .iter()
        .map(|e| GridRow {
            label: e.label.clone(),
            panels: vec![
                image(&e.input),
                image(&e.reconstruction),
                image(&e.residual),
                image(&e.lesion),
                image(
                    &e.residual
                        .iter()
                        .map(|&r| f32::from(u8::from(f64::from(r) > threshold)))
                        .collect::<Vec<_>>(),
                ),
            ],
        })
        .collect();
    let grid = SliceGrid {
        title: set.name.clone(),
        columns: [
            "input",
            "reconstruction",
            "residual",
            "ground truth",
            "prediction",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        display_ranges: Vec::new(),
    };
    let rel = format!("grids/{}.png", blindspot_report::slug(&set.name));
    create_dir(&dir.join("grids"))?;
    // input and reconstruction share one window, the residual is drawn in magma, masks binary
    write_slice_grid_with(&grid, &SliceGrid::paper_styles(), &dir.join(&rel))?;
    let kind = if lesional {
        GridKind::Lesional
    } else if ood {
        GridKind::OutOfDistribution
    } else {
        GridKind::InDistribution
    };
    Ok(Some(SliceGridRef {
        kind,
        path: rel,
        caption: format!(
            "{}: input, ensemble-mean reconstruction (inside the brain mask, where the loss \
             is computed; the input's background elsewhere), post-processed residual, ground \
             truth, residual above the threshold {threshold:.3}",
            set.name
        ),
    }))
}
