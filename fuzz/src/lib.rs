//! Bodies of the citycard fuzz targets. The same files are included by the
//! normal test suite (`#[path]` modules), so `.ci/run` exercises them too.
#[path = "../bodies/proto.rs"]
pub mod proto;

#[path = "../bodies/card.rs"]
pub mod card;

#[path = "../bodies/reader.rs"]
pub mod reader;
