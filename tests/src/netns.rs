//! Network namespaces owned by one test, named with a unique prefix and removed on drop.
