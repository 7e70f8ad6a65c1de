//! The cases, one public function each, taking the backend under test.

mod core;

pub use self::core::*;
