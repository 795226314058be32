//! The member key store (being written).
