//! Executes CNI plugins and conflists as a container runtime does (filled in by the CNI work).
