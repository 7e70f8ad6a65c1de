//! The cases, one public function each, taking the backend under test.

mod core;
mod retention;

pub use self::core::*;
pub use self::retention::*;
