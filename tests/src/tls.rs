//! A certificate authority made at test time, and the server certificates it signs, so that
//! the simulator can serve HTTPS that a client trusts through `SSL_CERT_FILE`.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const YEAR: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A server certificate chain and its private key, in PEM, for [`crate::SimConfig::tls`].
#[derive(Clone, PartialEq, Eq)]
pub struct SimTls {
    /// The chain, leaf first.
    pub cert_chain_pem: String,
    /// The leaf's private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for SimTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTls")
            .field("cert_chain_pem", &self.cert_chain_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// When a server certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From yesterday to a year from now.
    Current,
    /// From two years ago to one year ago.
    Expired,
}

/// A self-signed certificate authority, created fresh for a test.
pub struct TestCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA whose common name is `name`, valid from three years ago to five years from
    /// now (so that it covers every [`Validity`] of the certificates it signs).
    ///
    /// # Panics
    /// When key generation or signing fails, which takes a broken crypto provider.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch();
        params.not_before = now - 3 * YEAR;
        params.not_after = now + 5 * YEAR;
        let key = KeyPair::generate().expect("generating the test CA key");
        let cert = params
            .self_signed(&key)
            .expect("self-signing the test CA certificate");
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate in PEM, for the file that `SSL_CERT_FILE` names.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// A server certificate for `names`, signed by this CA. A name that parses as an IP
    /// address (`127.0.0.1`) becomes an IP address SAN, any other a DNS name SAN.
    ///
    /// # Panics
    /// When a name is not a valid DNS name (not ASCII), or key generation or signing fails.
    pub fn server(&self, names: &[&str], validity: Validity) -> SimTls {
        let subject_alt_names = names
            .iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    (*name)
                        .try_into()
                        .unwrap_or_else(|e| panic!("{name:?} is not a DNS name: {e}")),
                ),
            })
            .collect();
        let mut params = CertificateParams::default();
        params.subject_alt_names = subject_alt_names;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch();
        (params.not_before, params.not_after) = match validity {
            Validity::Current => (now - DAY, now + YEAR),
            Validity::Expired => (now - 2 * YEAR, now - YEAR),
        };
        let key = KeyPair::generate().expect("generating a test server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing a test server certificate");
        SimTls {
            cert_chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// Time since the Unix epoch; added to `date_time_ymd(1970, 1, 1)` it is rcgen's "now"
/// without naming the date crate rcgen uses.
fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}
