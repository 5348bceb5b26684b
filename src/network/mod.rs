//! Networks: bridges, veth pairs, IPAM, the embedded DNS server and published-port proxies (arrives with the networks issue).
