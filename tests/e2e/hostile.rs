//! Hostile components (being written).
