//! Network namespaces and veth pairs with RAII cleanup (owned by the netns integration tests).
