//! Atomic output files: the workspace's one writer, from `blindspot-atomic` (a temporary file
//! beside the destination, synced, then renamed).

pub use blindspot_atomic::{temp_file_beside, write_atomic};
