//! UPnP Internet Gateway Device port mapping, the messages: what most home routers
//! speak (NAT-PMP is the Apple side of the family).
//!
//! Three steps, each a pure function here: an SSDP search (a multicast HTTP-like
//! datagram) whose answers name the router's description document; the description,
//! an XML file naming the WAN connection service and its control URL; and SOAP calls
//! to that URL (`GetExternalIPAddress`, `AddPortMapping`, `DeletePortMapping`). Every
//! input comes from the local network and is bounded and checked before use.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// Where SSDP searches go.
pub const SSDP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 255, 250), 1900);
/// The services that map ports, best first.
const SERVICES: [&str; 3] = [
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
];
/// A router's search target.
const DEVICE: &str = "urn:schemas-upnp-org:device:InternetGatewayDevice:1";

/// The SSDP search datagram.
pub fn search_request() -> Vec<u8> {
    format!(
        "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: {DEVICE}\r\n\
         MAN: \"ssdp:discover\"\r\nMX: 2\r\n\r\n"
    )
    .into_bytes()
}

/// The description's URL from an answer to the search, if it is one: an HTTP 200 with a
/// `LOCATION` header holding an `http://` URL on the host that answered (a device may
/// not send us elsewhere).
pub fn parse_search_response(datagram: &[u8], from: SocketAddr) -> Option<Url> {
    let text = std::str::from_utf8(datagram).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?;
    if !status.starts_with("HTTP/1.1 200") && !status.starts_with("HTTP/1.0 200") {
        return None;
    }
    let location = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("location")
            .then(|| value.trim())
    })?;
    let url = Url::parse(location)?;
    (url.host == from.ip()).then_some(url)
}

/// An `http://IPv4[:port]/path` URL: routers give their address, not a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: std::net::IpAddr,
    pub port: u16,
    pub path: String,
}

impl Url {
    pub fn parse(text: &str) -> Option<Url> {
        let rest = text.strip_prefix("http://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (authority, 80),
        };
        Some(Url {
            host: std::net::IpAddr::V4(host.parse().ok()?),
            port,
            path: path.to_owned(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// `link` (absolute, or a path) read against this URL. An absolute link must stay
    /// on this host.
    fn join(&self, link: &str) -> Option<Url> {
        if link.starts_with("http://") {
            return Url::parse(link).filter(|url| url.host == self.host);
        }
        let path = if link.starts_with('/') {
            link.to_owned()
        } else {
            format!("/{link}")
        };
        Some(Url {
            path,
            ..self.clone()
        })
    }
}

/// Where to send the SOAP calls, and as which service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub url: Url,
    pub service: String,
}

/// The WAN connection service in a router's description (fetched from `location`):
/// the best of [`SERVICES`] present, with its control URL.
pub fn parse_description(xml: &str, location: &Url) -> Option<Control> {
    let services: Vec<(&str, &str)> = elements(xml, "service")
        .filter_map(|service| {
            Some((
                text_of(service, "serviceType")?,
                text_of(service, "controlURL")?,
            ))
        })
        .collect();
    let base = text_of(xml, "URLBase")
        .and_then(Url::parse)
        .filter(|base| base.host == location.host)
        .unwrap_or_else(|| location.clone());
    SERVICES.iter().find_map(|&wanted| {
        let (service, control) = services.iter().find(|(kind, _)| *kind == wanted)?;
        Some(Control {
            url: base.join(control)?,
            service: (*service).to_owned(),
        })
    })
}

/// The bodies of each `<name>…</name>` element (not nested in one another).
fn elements<'a>(xml: &'a str, name: &str) -> impl Iterator<Item = &'a str> + 'a {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut rest = xml;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let end = start + rest[start..].find(&close)?;
        let body = &rest[start..end];
        rest = &rest[end + close.len()..];
        Some(body)
    })
}

/// The trimmed text of the first `<name>` element in `xml`.
fn text_of<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    elements(xml, name).next().map(str::trim)
}

/// A SOAP call: the HTTP request to send to the control URL.
pub fn soap_request(control: &Control, action: &str, args: &[(&str, String)]) -> Vec<u8> {
    let mut arguments = String::new();
    for (name, value) in args {
        arguments.push_str(&format!("<{name}>{}</{name}>", escape(value)));
    }
    let body = format!(
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>\
         <u:{action} xmlns:u=\"{service}\">{arguments}</u:{action}></s:Body></s:Envelope>\r\n",
        service = control.service
    );
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml; charset=\"utf-8\"\r\n\
         SOAPAction: \"{service}#{action}\"\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{body}",
        path = control.url.path,
        addr = control.url.addr(),
        service = control.service,
        len = body.len(),
    )
    .into_bytes()
}

fn escape(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// What a SOAP call returned: the response's arguments, or the router's error.
pub fn parse_soap_response(status: u16, body: &str) -> Result<HashMap<String, String>, String> {
    if status != 200 {
        let code = text_of(body, "errorCode").unwrap_or("?");
        let description = text_of(body, "errorDescription").unwrap_or("no description");
        return Err(format!("UPnP error {code}: {description} (HTTP {status})"));
    }
    let mut out = HashMap::new();
    for name in ["NewExternalIPAddress"] {
        if let Some(value) = text_of(body, name) {
            out.insert(name.to_owned(), value.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 1900)
    }

    #[test]
    fn search_answers() {
        let answer = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n\
            ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\
            Location: http://192.168.1.1:5000/rootDesc.xml\r\n\r\n";
        assert_eq!(
            parse_search_response(answer, from("192.168.1.1")),
            Some(Url {
                host: "192.168.1.1".parse().unwrap(),
                port: 5000,
                path: "/rootDesc.xml".into()
            })
        );
        // Pointing at another host, not a 200, or no location: ignored.
        assert_eq!(parse_search_response(answer, from("192.168.1.7")), None);
        assert_eq!(
            parse_search_response(b"HTTP/1.1 404 Not Found\r\n\r\n", from("192.168.1.1")),
            None
        );
        assert_eq!(
            parse_search_response(b"HTTP/1.1 200 OK\r\n\r\n", from("192.168.1.1")),
            None
        );
        assert_eq!(
            parse_search_response(&[0xff, 0xfe], from("192.168.1.1")),
            None
        );
        assert!(String::from_utf8(search_request())
            .unwrap()
            .contains("ssdp:discover"));
    }

    #[test]
    fn description_gives_the_wan_service() {
        let location = Url::parse("http://192.168.1.1:5000/rootDesc.xml").unwrap();
        let xml = "<root><device><serviceList>\
            <service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType>\
            <controlURL>/ctl/L3F</controlURL></service>\
            <service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>\
            <controlURL>/ctl/IPConn</controlURL></service>\
            <service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType>\
            <controlURL>ctl/PPP</controlURL></service>\
            </serviceList></device></root>";
        let control = parse_description(xml, &location).unwrap();
        assert_eq!(
            control.service,
            "urn:schemas-upnp-org:service:WANIPConnection:1"
        );
        assert_eq!(control.url.path, "/ctl/IPConn");
        assert_eq!(control.url.port, 5000);
        // A control URL on another host is not followed.
        let elsewhere = xml.replace("/ctl/IPConn", "http://10.9.9.9/ctl");
        let control = parse_description(&elsewhere, &location).unwrap();
        assert_eq!(
            control.service,
            "urn:schemas-upnp-org:service:WANPPPConnection:1"
        );
        assert_eq!(control.url.path, "/ctl/PPP");
        assert_eq!(parse_description("<root/>", &location), None);
    }

    #[test]
    fn soap_calls_and_answers() {
        let control = Control {
            url: Url::parse("http://192.168.1.1:5000/ctl/IPConn").unwrap(),
            service: "urn:schemas-upnp-org:service:WANIPConnection:1".into(),
        };
        let request = String::from_utf8(soap_request(
            &control,
            "AddPortMapping",
            &[
                ("NewExternalPort", "6881".into()),
                ("NewPortMappingDescription", "a<b".into()),
            ],
        ))
        .unwrap();
        assert!(request.starts_with("POST /ctl/IPConn HTTP/1.1\r\nHost: 192.168.1.1:5000\r\n"));
        assert!(request.contains(
            "SOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping\""
        ));
        assert!(request.contains("<NewExternalPort>6881</NewExternalPort>"));
        assert!(request.contains("a&lt;b"));
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let ok = "<s:Envelope><s:Body><u:GetExternalIPAddressResponse>\
            <NewExternalIPAddress>203.0.113.4</NewExternalIPAddress>\
            </u:GetExternalIPAddressResponse></s:Body></s:Envelope>";
        assert_eq!(
            parse_soap_response(200, ok).unwrap()["NewExternalIPAddress"],
            "203.0.113.4"
        );
        let fault = "<s:Fault><detail><UPnPError><errorCode>718</errorCode>\
            <errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault>";
        assert_eq!(
            parse_soap_response(500, fault),
            Err("UPnP error 718: ConflictInMappingEntry (HTTP 500)".into())
        );
    }

    proptest::proptest! {
        /// Anything from the network: no panic.
        #[test]
        fn any_input_is_safe(text in ".{0,200}") {
            let location = Url::parse("http://192.168.1.1/d.xml").unwrap();
            let _ = parse_search_response(text.as_bytes(), from("192.168.1.1"));
            let _ = parse_description(&text, &location);
            let _ = parse_soap_response(500, &text);
            let _ = Url::parse(&text);
        }
    }
}
