//! Cipher suites (being written).
