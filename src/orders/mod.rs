//! Orders: the state machine (`model`). Checkout, storage and routes join it when the unit of
//! work lands.

pub mod model;
