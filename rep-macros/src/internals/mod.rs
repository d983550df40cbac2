//! Parsing and checking, shared by the macros: `ast` (the IR, parsed from the struct) with
//! `ops` (one op type and its options), `attrs` (attributes passed through), `geo` (geometry
//! expressions), `check` (shape rules), `names` (weight keys), `model` (the model IR), `graph`
//! (the graph IR and its wiring checks) and `ctxt` (the error collector).

pub mod ast;
pub mod attrs;
pub mod check;
pub mod ctxt;
#[cfg(test)]
mod fuzz;
pub mod geo;
pub mod graph;
pub mod model;
pub mod names;
mod ops;
