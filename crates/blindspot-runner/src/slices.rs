//! The adapter from an on-disk slice cache ([`SliceCache`], memory-mapped) to the training
//! loop's [`SliceSource`]: training reads batches straight from the map, nothing is loaded
//! up front.

use std::path::Path;

use blindspot_core::SliceSource;
use blindspot_io::SliceCache;

/// A [`SliceCache`] seen as a [`SliceSource`] (images as stored, brain masks as 0/1 floats).
#[derive(Debug)]
pub struct CacheSlices {
    cache: SliceCache,
}

impl CacheSlices {
    /// Wraps an opened cache.
    pub fn new(cache: SliceCache) -> Self {
        Self { cache }
    }

    /// Opens the cache at `path`.
    ///
    /// # Errors
    /// Those of [`SliceCache::open`] (they name the file).
    pub fn open(path: &Path) -> blindspot_io::Result<Self> {
        SliceCache::open(path).map(Self::new)
    }

    /// The wrapped cache (identities, lesion masks, parameters).
    pub fn cache(&self) -> &SliceCache {
        &self.cache
    }
}

impl SliceSource for CacheSlices {
    fn len(&self) -> usize {
        self.cache.len()
    }

    fn shape(&self) -> [usize; 2] {
        [self.cache.height(), self.cache.width()]
    }

    fn read(&self, index: usize, image: &mut [f32], mask: &mut [f32]) -> Result<(), String> {
        let n = self.cache.height() * self.cache.width();
        if index >= self.cache.len() {
            return Err(format!(
                "slice {index} out of range: {} holds {} slices",
                self.cache.path().display(),
                self.cache.len()
            ));
        }
        if image.len() != n || mask.len() != n {
            return Err(format!(
                "buffers of {} and {} values for {}x{} slices of {}",
                image.len(),
                mask.len(),
                self.cache.height(),
                self.cache.width(),
                self.cache.path().display()
            ));
        }
        self.cache.image_into(index, image);
        for (m, &b) in mask.iter_mut().zip(self.cache.brain(index)) {
            *m = f32::from(u8::from(b != 0));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blindspot_io::CacheWriter;

    #[test]
    fn reads_images_and_masks_by_index_and_refuses_bad_indices() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.bsc");
        let mut w = CacheWriter::create(&path, 2, 2, serde_json::json!({"p": 1})).unwrap();
        w.push("s1", 3, &[1.0, 2.0, 3.0, 4.0], &[1, 0, 1, 0], &[0, 0, 1, 0])
            .unwrap();
        w.push("s1", 4, &[5.0, 6.0, 7.0, 8.0], &[0, 1, 1, 1], &[0, 0, 0, 0])
            .unwrap();
        w.finish().unwrap();
        let src = CacheSlices::open(&path).unwrap();
        assert_eq!(src.len(), 2);
        assert_eq!(src.shape(), [2, 2]);
        let (mut img, mut mask) = (vec![0.0; 4], vec![0.0; 4]);
        src.read(1, &mut img, &mut mask).unwrap();
        assert_eq!(img, [5.0, 6.0, 7.0, 8.0]);
        assert_eq!(mask, [0.0, 1.0, 1.0, 1.0]);
        src.read(0, &mut img, &mut mask).unwrap();
        assert_eq!(mask, [1.0, 0.0, 1.0, 0.0]);
        let err = src.read(2, &mut img, &mut mask).unwrap_err();
        assert!(
            err.contains("out of range") && err.contains("c.bsc"),
            "{err}"
        );
        assert!(src.read(0, &mut [0.0; 3], &mut mask).is_err());
    }
}
