//! Where Caliop may connect on its own initiative (delivery to an MX, WKD
//! and MTA-STS fetches): only to public addresses. A name the sender or a
//! recipient's domain controls could otherwise point the server at itself
//! or its neighbours (loopback, a private network, a cloud's metadata
//! endpoint). The check is made on the address actually connected to, after
//! resolution, so that DNS rebinding gains nothing. A configured relay is
//! trusted, and `delivery.allow_private_networks` lifts the rule for tests
//! and private deployments.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is an address on the public Internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

/// Whether Caliop may connect to `ip` under this setting.
pub fn may_connect(ip: IpAddr, allow_private_networks: bool) -> bool {
    allow_private_networks || is_public(ip)
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || a == 0 // 0.0.0.0/8, "this network"
        || ip.is_loopback() // 127/8
        || ip.is_private() // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local() // 169.254/16, cloud metadata among it
        || (a == 100 && (64..128).contains(&b)) // 100.64/10, carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24, IETF protocol assignments
        // Documentation (192.0.2/24, 198.51.100/24, 203.0.113/24): never a real MX.
        || ip.is_documentation()
        || (a == 198 && (b & 0xfe) == 18) // 198.18/15, benchmarking
        || ip.is_multicast() // 224/4
        || a >= 240) // 240/4 reserved, and the broadcast address
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // fc00::/7, unique local
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10, link-local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10, old site-local
        || (s[0] == 0x2001 && s[1] == 0x0db8) // 2001:db8::/32, documentation
        || (s[0] == 0x0064 && s[1] == 0xff9b) // 64:ff9b::/96 NAT64 (embeds IPv4 of any kind)
        || (s[0] == 0x2002) // 2002::/16 6to4 (embeds IPv4 of any kind)
        || (s[0] == 0x2001 && s[1] == 0) // 2001::/32 Teredo
        || s[..6] == [0, 0, 0, 0, 0, 0]) // ::/96, IPv4-compatible (deprecated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap())
    }

    #[test]
    fn private_loopback_and_special_addresses_are_never_public() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.0.8",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
            "2001:db8::1",
        ] {
            assert!(!public(ip), "{ip} must not be public");
        }
    }

    #[test]
    fn public_addresses_are() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "193.0.0.1",
            "2a00:1450:4007::1b",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(public(ip), "{ip} is public");
        }
        assert!(may_connect("127.0.0.1".parse().unwrap(), true));
        assert!(!may_connect("127.0.0.1".parse().unwrap(), false));
    }
}
