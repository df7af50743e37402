//! Loopback fakes of the platforms, for the demo and tests.
