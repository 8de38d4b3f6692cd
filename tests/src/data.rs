//! The records the simulator serves, plus the sample and generated data sets and the matching
//! Scopable CSV files used by the demo, the end-to-end tests and the benchmark.

use std::fmt::Write as _;

/// An IT Glue organization as the simulator serves it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Org {
    /// IT Glue id (served as a string in `id`).
    pub id: u64,
    /// `name`.
    pub name: String,
    /// `short-name`.
    pub short_name: String,
    /// `organization-type-name` (Customer, Vendor, Owner...).
    pub type_name: String,
    /// `organization-status-name` (Active, Inactive...).
    pub status_name: String,
    /// `primary`: the account's own company.
    pub primary: bool,
    /// `parent-id`.
    pub parent_id: Option<u64>,
}

/// An IT Glue configuration (a device) as the simulator serves it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// IT Glue id (served as a string in `id`).
    pub id: u64,
    /// `organization-id` (an integer attribute); `organization-name` is looked up from it.
    pub organization_id: u64,
    /// `name`: the display name, never a hostname.
    pub name: String,
    /// `hostname`.
    pub hostname: Option<String>,
    /// `primary-ip`.
    pub primary_ip: Option<String>,
    /// `serial-number`.
    pub serial_number: Option<String>,
    /// `mac-address`: IT Glue mirrors the primary interface's MAC here.
    pub mac_address: Option<String>,
    /// `asset-tag`.
    pub asset_tag: Option<String>,
    /// Served in `included` with `include=configuration_interfaces`.
    pub interfaces: Vec<Interface>,
    /// `archived`.
    pub archived: bool,
    /// `configuration-type-name` (Workstation, Server...).
    pub type_name: String,
    /// `configuration-status-name` (Active, Inactive...).
    pub status_name: String,
}

/// One network interface of a configuration (`configuration-interfaces`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interface {
    /// IT Glue id of the interface.
    pub id: u64,
    /// `mac-address`: free text, as in IT Glue.
    pub mac_address: Option<String>,
    /// `ip-address`.
    pub ip_address: Option<String>,
    /// `primary`.
    pub primary: bool,
}

/// Everything the simulator serves. Typed records are served in id order, followed by the raw
/// records in the order given.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    /// Organizations.
    pub organizations: Vec<Org>,
    /// Configurations.
    pub configurations: Vec<Config>,
    /// JSON:API resource objects served verbatim after the organizations (bad-input tests);
    /// they count in `total-count`.
    pub raw_organizations: Vec<serde_json::Value>,
    /// JSON:API resource objects served verbatim after the configurations (bad-input tests);
    /// they count in `total-count`.
    pub raw_configurations: Vec<serde_json::Value>,
}

impl Org {
    /// An active customer organization with no short name and no parent.
    pub fn new(id: u64, name: &str) -> Org {
        Org {
            id,
            name: name.to_string(),
            short_name: String::new(),
            type_name: "Customer".to_string(),
            status_name: "Active".to_string(),
            primary: false,
            parent_id: None,
        }
    }

    /// Sets `organization-type-name`.
    pub fn with_type(mut self, type_name: &str) -> Org {
        self.type_name = type_name.to_string();
        self
    }

    /// Sets `organization-status-name`.
    pub fn with_status(mut self, status_name: &str) -> Org {
        self.status_name = status_name.to_string();
        self
    }

    /// Sets `short-name`.
    pub fn with_short_name(mut self, short_name: &str) -> Org {
        self.short_name = short_name.to_string();
        self
    }

    /// Sets `parent-id`.
    pub fn with_parent(mut self, parent_id: u64) -> Org {
        self.parent_id = Some(parent_id);
        self
    }

    /// Marks the organization as the account's own company (`primary`).
    pub fn primary(mut self) -> Org {
        self.primary = true;
        self
    }
}

impl Config {
    /// An active, unarchived workstation with no identifiers and no interfaces.
    pub fn new(id: u64, organization_id: u64, name: &str) -> Config {
        Config {
            id,
            organization_id,
            name: name.to_string(),
            type_name: "Workstation".to_string(),
            status_name: "Active".to_string(),
            ..Config::default()
        }
    }

    /// Sets `hostname`.
    pub fn with_hostname(mut self, hostname: &str) -> Config {
        self.hostname = Some(hostname.to_string());
        self
    }

    /// Sets `serial-number`.
    pub fn with_serial(mut self, serial: &str) -> Config {
        self.serial_number = Some(serial.to_string());
        self
    }

    /// Sets `primary-ip` (and the primary interface's IP when one exists).
    pub fn with_ip(mut self, ip: &str) -> Config {
        self.primary_ip = Some(ip.to_string());
        if let Some(primary) = self.interfaces.iter_mut().find(|i| i.primary) {
            primary.ip_address = Some(ip.to_string());
        }
        self
    }

    /// Sets `mac-address` and adds a primary interface carrying it, as IT Glue mirrors them.
    pub fn with_mac(mut self, mac: &str) -> Config {
        self.mac_address = Some(mac.to_string());
        let ip = self.primary_ip.clone();
        self.push_interface(Some(mac), ip.as_deref(), true)
    }

    /// Adds an interface; its id is derived from the configuration id.
    pub fn with_interface(self, mac: Option<&str>, ip: Option<&str>, primary: bool) -> Config {
        self.push_interface(mac, ip, primary)
    }

    /// Sets `configuration-type-name`.
    pub fn with_type(mut self, type_name: &str) -> Config {
        self.type_name = type_name.to_string();
        self
    }

    /// Sets `asset-tag`.
    pub fn with_asset_tag(mut self, tag: &str) -> Config {
        self.asset_tag = Some(tag.to_string());
        self
    }

    /// Marks the configuration archived.
    pub fn archived(mut self) -> Config {
        self.archived = true;
        self
    }

    fn push_interface(mut self, mac: Option<&str>, ip: Option<&str>, primary: bool) -> Config {
        let id = self.id.saturating_mul(100) + self.interfaces.len() as u64 + 1;
        self.interfaces.push(Interface {
            id,
            mac_address: mac.map(str::to_string),
            ip_address: ip.map(str::to_string),
            primary,
        });
        self
    }
}

/// A deterministic `updated-at` for a record: a fixed instant in 2025 plus `id` seconds
/// (modulo a year), in RFC 3339 UTC.
pub(crate) fn updated_at(id: u64) -> String {
    // 2025-01-06T09:00:00Z
    const BASE: u64 = 1_736_154_000;
    rfc3339(BASE + id % 31_536_000)
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC (`2025-01-06T09:00:00Z`).
pub(crate) fn rfc3339(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// One CSV field, quoted when it holds a comma, a quote, a line break or outer white space.
fn csv_field(value: &str) -> String {
    let needs_quotes = value.contains([',', '"', '\n', '\r'])
        || value.starts_with(char::is_whitespace)
        || value.ends_with(char::is_whitespace);
    if needs_quotes {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn csv_row(out: &mut String, fields: &[&str]) {
    let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    out.push_str(&row.join(","));
    out.push('\n');
}

/// Header of the Scopable `clients.csv`.
pub const CLIENTS_CSV_HEADER: &str = "id,name";
/// Header of the Scopable `configurations.csv`.
pub const CONFIGURATIONS_CSV_HEADER: &str = "id,client_id,name,hostname,serial_number,mac_address";

/// A Scopable configuration row: id, client id, name, hostname, serial number, MAC cell.
type ScopableConfigRow = (
    u64,
    u64,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// The sample account: a few dozen MSP customers and their devices, covering every hard case
/// of the matching rules. Comments give the outcome the rules in `matching.md` call for.
pub fn sample_dataset() -> Dataset {
    let organizations = vec![
        // Linked: exact name. Home of the device hard cases below.
        Org::new(TYRELL, "Tyrell Systems").with_short_name("TYR"),
        // Linked: punctuation and case (client `ACME Inc`).
        Org::new(ACME, "Acme, Inc.").with_short_name("ACME"),
        // Linked: case only (client `Northwind Traders`).
        Org::new(NORTHWIND, "northwind traders"),
        // Linked: runs of spaces (client `Blue Harbor Dental`).
        Org::new(BLUE_HARBOR, "Blue  Harbor   Dental"),
        // Linked: full-width letters (client `Fabrikam Logistics`).
        Org::new(FABRIKAM, "Ｆａｂｒｉｋａｍ Ｌｏｇｉｓｔｉｃｓ"),
        // Linked: zero-width space inside a word (client `WideWorld Importers`).
        Org::new(3_100_106, "Wide\u{200B}World Importers"),
        // Linked: no-break space (client `Litware Partners`).
        Org::new(3_100_107, "Litware\u{00A0}Partners"),
        // Linked: typographic apostrophe vs straight one (client `O'Brien & Sons Plumbing`).
        Org::new(3_100_108, "O\u{2019}Brien & Sons Plumbing"),
        // multiple-clients: `Adventure Works` and `Adventure-Works` normalize alike.
        Org::new(ADVENTURE, "Adventure Works"),
        // multiple-organizations: both normalize to `coho winery`, one client of that name.
        Org::new(COHO, "Coho Winery"),
        Org::new(3_100_111, "COHO WINERY "),
        // no-match with a suggestion: client `Contoso` differs by a legal suffix only.
        Org::new(CONTOSO, "Contoso LLC"),
        // empty-name, twice: empty, and a zero-width space only.
        Org::new(3_100_113, ""),
        Org::new(3_100_114, "\u{200B}"),
        // no-match: no client at all.
        Org::new(3_100_115, "Fourth Coffee"),
        // no-match: the MSP's own company has no client record.
        Org::new(3_100_116, "Bellwether IT")
            .with_type("Owner")
            .primary(),
        Org::new(3_100_117, "Microsoft").with_type("Vendor"),
        // no-match, no suggestion: client `Trey Research Group` is a different name.
        Org::new(3_100_118, "Trey Research"),
        // no-match with a suggestion: a leading "the" (client `Graphic Design Institute`).
        Org::new(3_100_119, "The Graphic Design Institute"),
        // Linked: apostrophe dropped (client `Margies Travel`).
        Org::new(3_100_120, "Margie\u{2019}s Travel"),
        // Linked: soft hyphen is a format character (client `AlpineSki House`).
        Org::new(3_100_121, "Alpine\u{00AD}Ski House"),
        // Linked: status is not used (client `Wingtip Toys`).
        Org::new(WINGTIP, "Wingtip Toys").with_status("Inactive"),
        // Linked: case, and punctuation on both sides (client `VANARSDEL, LTD`).
        Org::new(3_100_123, "VanArsdel, Ltd."),
        // Linked: exact, with an ampersand on both sides.
        Org::new(3_100_124, "City Power & Light"),
        Org::new(3_100_125, "Woodgrove Bank").with_short_name("WGB"),
        // Linked: full stop dropped (client `A Datum Corporation`).
        Org::new(3_100_126, "A. Datum Corporation"),
        Org::new(3_100_127, "Humongous Insurance"),
        // no-match with a suggestion: `company` is a legal suffix (client `Lamna Healthcare`).
        Org::new(3_100_128, "Lamna Healthcare Company"),
        // Linked; a child organization of Woodgrove Bank.
        Org::new(3_100_129, "Relecloud").with_parent(3_100_125),
        // Linked: the `ﬁ` ligature splits (client `First Up Consultants`).
        Org::new(3_100_130, "\u{FB01}rst Up Consultants"),
        Org::new(3_100_131, "Tailspin Toys"),
        // no-match, no suggestion.
        Org::new(3_100_132, "Best For You Organics Company"),
        Org::new(3_100_133, "Consolidated Messenger"),
    ];

    let t = TYRELL;
    let configurations = vec![
        // Linked by hostname: DNS suffix on the IT Glue side (`TY-DC01` in Scopable).
        Config::new(8_200_101, t, "TY-DC01")
            .with_type("Server")
            .with_hostname("ty-dc01.corp.local")
            .with_ip("10.20.0.10"),
        // Linked by serial (case and white space differ), MAC and hostname.
        Config::new(8_200_102, t, "TY-FS01")
            .with_type("Server")
            .with_hostname("ty-fs01")
            .with_serial("CZ2841AB7Q")
            .with_ip("10.20.0.11")
            .with_mac("3c:52:82:1a:9f:01")
            .with_asset_tag("TYR-0042"),
        // Linked by MAC only, dashes vs colons.
        Config::new(8_200_103, t, "Reception PC").with_mac("3C-52-82-1A-9F-04"),
        // Linked by MAC only, Cisco dotted form vs bare hex.
        Config::new(8_200_104, t, "TY-WS05").with_mac("3c52.821a.9f05"),
        // Linked by MAC only, and only through the secondary (dock) interface.
        Config::new(8_200_105, t, "TY-LAP07")
            .with_type("Laptop")
            .with_serial("5CD9131QWE")
            .with_ip("10.20.4.57")
            .with_mac("a4:bb:6d:11:22:33")
            .with_interface(Some("a4:bb:6d:44:55:66"), Some("10.20.1.57"), false),
        // Linked by hostname: the placeholder serial on both sides is neither evidence nor
        // a conflict.
        Config::new(8_200_106, t, "TY-WS03")
            .with_hostname("ty-ws03")
            .with_serial("To Be Filled By O.E.M."),
        // no-match: a placeholder serial is the only shared value.
        Config::new(8_200_107, t, "Build box").with_serial("0000000"),
        // no-match: a placeholder MAC is the only shared value.
        Config::new(8_200_108, t, "TY-VPN01")
            .with_type("Firewall")
            .with_mac("00:00:00:00:00:00"),
        // conflict: the serial points at one Scopable device, the MAC at another.
        Config::new(8_200_109, t, "TY-SRV02")
            .with_type("Server")
            .with_hostname("ty-srv02")
            .with_serial("5CG7301XYZ")
            .with_mac("00:1a:2b:3c:4d:5e"),
        // conflict: the hostname matches but both sides have different usable serials.
        Config::new(8_200_110, t, "TY-SRV03")
            .with_type("Server")
            .with_hostname("ty-srv03")
            .with_serial("MXQ1234567"),
        // target-taken, twice: two IT Glue records want the same Scopable NAS.
        Config::new(8_200_111, t, "TY-NAS01")
            .with_type("Storage")
            .with_hostname("ty-nas01")
            .with_serial("NAS4455667"),
        Config::new(8_200_112, t, "TY-NAS01 (duplicate)")
            .with_type("Storage")
            .with_serial("NAS4455667"),
        // archived: would link by serial and hostname otherwise.
        Config::new(8_200_113, t, "TY-WS09")
            .with_hostname("ty-ws09")
            .with_serial("PF1ABCDE")
            .archived(),
        // no-match: an IP address as hostname is not evidence; display names never count.
        Config::new(8_200_114, t, "Core switch")
            .with_type("Switch")
            .with_hostname("10.20.0.2")
            .with_ip("10.20.0.2"),
        // Linked by MAC: the second of two MACs in the Scopable cell (`;`).
        Config::new(8_200_115, t, "TY-HV01")
            .with_type("Server")
            .with_mac("B8-CA-3A-01-02-04"),
        // Linked by MAC: the second of two MACs in the Scopable cell (space).
        Config::new(8_200_116, t, "TY-HV02")
            .with_type("Server")
            .with_mac("f4:8e:38:aa:bb:02"),
        // Linked by hostname; its `-old` namesake below never links.
        Config::new(8_200_117, t, "TY-WS02").with_hostname("ty-ws02"),
        Config::new(8_200_118, t, "TY-WS02-OLD").with_hostname("ty-ws02-old"),
        // multiple-configurations: two Scopable records carry this hostname.
        Config::new(8_200_119, t, "TY-PRN01")
            .with_type("Printer")
            .with_hostname("ty-prn01.corp.local"),
        // no-match: the MAC is not valid hex (the API documentation's own example).
        Config::new(8_200_120, t, "TY-WS10").with_mac("18-5E-0F-ED-99-9J"),
        // Linked by hostname: the serial is shared by two Scopable records, so unusable.
        Config::new(8_200_121, t, "TY-TAB01")
            .with_type("Tablet")
            .with_hostname("ty-tab01")
            .with_serial("CNU4123XYZ"),
        // no-match: a multicast MAC is not evidence.
        Config::new(8_200_122, t, "TY-WS11").with_mac("01:00:5e:00:00:fb"),
        // Linked by hostname: trailing dot and DNS suffix.
        Config::new(8_200_123, t, "TY-WS12").with_hostname("ty-ws12.corp.local."),
        // no-match: a Windows virtual adapter MAC is a placeholder.
        Config::new(8_200_124, t, "TY-WS13").with_mac("02:00:4e:43:50:49"),
        // Linked by serial and hostname (a virtual machine's long serial).
        Config::new(8_200_201, ACME, "ACME-DC01")
            .with_type("Server")
            .with_hostname("acme-dc01.acme.local")
            .with_serial("VMware-56 4d 1a 2b 3c 4d 5e 6f-70 81 92 a3 b4 c5 d6 e7"),
        // Linked by serial.
        Config::new(8_200_202, ACME, "ACME-FW01")
            .with_type("Firewall")
            .with_serial("FGT60F0000123456")
            .with_ip("203.0.113.10"),
        // Linked by serial (case differs) and MAC.
        Config::new(8_200_203, ACME, "ACME-LT-014")
            .with_type("Laptop")
            .with_serial("PC1XYZ89")
            .with_mac("8c:16:45:aa:01:02"),
        // no-match: the same serial exists, but under another client (Northwind).
        Config::new(8_200_204, ACME, "ACME-WS07").with_serial("5CD0123ABC"),
        // Linked by serial.
        Config::new(8_200_301, NORTHWIND, "NW-POS01").with_serial("JPH12345AB"),
        // Linked by hostname and MAC (dotted form in Scopable).
        Config::new(8_200_401, BLUE_HARBOR, "BHD-XRAY")
            .with_hostname("bhd-xray")
            .with_mac("00:0d:3a:11:22:33"),
        // Linked by serial.
        Config::new(8_200_501, FABRIKAM, "FAB-WMS01")
            .with_type("Server")
            .with_serial("J9ZT5K2"),
        // parent-unplaced: organization matches two clients.
        Config::new(8_200_901, ADVENTURE, "AW-SRV01")
            .with_type("Server")
            .with_serial("AWS0001X"),
        // parent-unplaced: organization is ambiguous on the IT Glue side.
        Config::new(8_201_001, COHO, "COHO-PC1").with_serial("COHO1234"),
        // parent-unplaced: organization has no client.
        Config::new(8_201_201, CONTOSO, "CONTOSO-NAS")
            .with_type("Storage")
            .with_serial("CTS99887"),
        // Linked by serial, in an inactive organization.
        Config::new(8_202_201, WINGTIP, "WT-LAP01")
            .with_type("Laptop")
            .with_serial("R90ABCDE"),
    ];

    Dataset {
        organizations,
        configurations,
        raw_organizations: Vec::new(),
        raw_configurations: Vec::new(),
    }
}

const TYRELL: u64 = 3_100_101;
const ACME: u64 = 3_100_102;
const NORTHWIND: u64 = 3_100_103;
const BLUE_HARBOR: u64 = 3_100_104;
const FABRIKAM: u64 = 3_100_105;
const ADVENTURE: u64 = 3_100_109;
const COHO: u64 = 3_100_110;
const CONTOSO: u64 = 3_100_112;
const WINGTIP: u64 = 3_100_122;

/// The Scopable side of the sample account, as `(clients.csv, configurations.csv)`.
pub fn sample_scopable_csv() -> (String, String) {
    let clients: &[(u64, &str)] = &[
        (101, "Tyrell Systems"),
        (102, "ACME Inc"),
        (103, "Northwind Traders"),
        (104, "Blue Harbor Dental"),
        (105, "Fabrikam Logistics"),
        (106, "WideWorld Importers"),
        (107, "Litware Partners"),
        (108, "O'Brien & Sons Plumbing"),
        (109, "Adventure Works"),
        (110, "Adventure-Works"),
        (111, "Coho Winery"),
        (112, "Contoso"),
        (113, "Trey Research Group"),
        (114, "Graphic Design Institute"),
        (115, "Margies Travel"),
        (116, "AlpineSki House"),
        (117, "Wingtip Toys"),
        (118, "VANARSDEL, LTD"),
        (119, "City Power & Light"),
        (120, "Woodgrove Bank"),
        (121, "A Datum Corporation"),
        (122, "Humongous Insurance"),
        (123, "Lamna Healthcare"),
        (124, "Relecloud"),
        (125, "First Up Consultants"),
        (126, "Tailspin Toys"),
        (127, "Consolidated Messenger"),
        // Clients with no IT Glue organization.
        (128, "Lucerne Publishing"),
        (129, "School of Fine Art"),
    ];
    let configurations: &[ScopableConfigRow] = &[
        (5001, 101, "Domain controller", "TY-DC01", "", ""),
        (
            5002,
            101,
            "File server",
            "TY-FS01",
            " cz2841ab7q",
            "3C-52-82-1A-9F-01",
        ),
        (5003, 101, "Reception desk", "", "", "3c:52:82:1a:9f:04"),
        (5004, 101, "Accounts workstation", "", "", "3C52821A9F05"),
        (5005, 101, "Sales laptop", "", "", "A4-BB-6D-44-55-66"),
        (
            5006,
            101,
            "Design workstation",
            "TY-WS03",
            "To Be Filled By O.E.M.",
            "",
        ),
        (5007, 101, "Build server", "TY-BUILD", "0000000", ""),
        (5008, 101, "VPN appliance", "", "", "00-00-00-00-00-00"),
        (5009, 101, "App server", "", "5CG7301XYZ", ""),
        (5010, 101, "Old app server", "", "", "00:1A:2B:3C:4D:5E"),
        (5011, 101, "SQL server", "TY-SRV03", "MXQ7654321", ""),
        (5012, 101, "Backup NAS", "TY-NAS01", "NAS4455667", ""),
        (5013, 101, "Retired workstation", "TY-WS09", "PF1ABCDE", ""),
        (5014, 101, "Core switch", "10.20.0.2", "", ""),
        (
            5015,
            101,
            "Hyper-V host",
            "",
            "",
            "b8:ca:3a:01:02:03; b8:ca:3a:01:02:04",
        ),
        (
            5016,
            101,
            "Hyper-V host 2",
            "",
            "",
            "f4:8e:38:aa:bb:01 f4:8e:38:aa:bb:02",
        ),
        (5017, 101, "Front office PC", "TY-WS02", "", ""),
        (5018, 101, "Printer upstairs", "TY-PRN01", "", ""),
        (5019, 101, "Printer (duplicate record)", "ty-prn01", "", ""),
        (5020, 101, "Warehouse tablet", "TY-TAB01", "CNU4123XYZ", ""),
        (
            5021,
            101,
            "Warehouse tablet (reimaged)",
            "",
            "CNU4123XYZ",
            "",
        ),
        (5022, 101, "Streaming box", "", "", "01:00:5E:00:00:FB"),
        (5023, 101, "Workstation 12", "TY-WS12", "", ""),
        (
            5024,
            101,
            "Workstation 13",
            "TY-WS13B",
            "",
            "02:00:4E:43:50:49",
        ),
        (
            5101,
            102,
            "Domain controller",
            "ACME-DC01",
            "VMware-56 4d 1a 2b 3c 4d 5e 6f-70 81 92 a3 b4 c5 d6 e7",
            "",
        ),
        (5102, 102, "Firewall", "", "FGT60F0000123456", ""),
        (5103, 102, "Laptop 14", "", "pc1xyz89", "8C:16:45:AA:01:02"),
        (5201, 103, "Warehouse PC", "NW-WH01", "5CD0123ABC", ""),
        (5202, 103, "Point of sale", "nw-pos01", "JPH12345AB", ""),
        (5301, 109, "App server", "AW-SRV01", "AWS0001X", ""),
        (5302, 111, "Tasting room PC", "COHO-PC1", "COHO1234", ""),
        (5303, 112, "NAS", "CONTOSO-NAS", "CTS99887", ""),
        (5401, 105, "Warehouse server", "FAB-WMS01", "J9ZT5K2", ""),
        (
            5402,
            104,
            "X-ray workstation",
            "BHD-XRAY",
            "",
            "000d.3a11.2233",
        ),
        (5403, 117, "Laptop", "WT-LAP01", "R90ABCDE", ""),
    ];

    let mut clients_csv = format!("{CLIENTS_CSV_HEADER}\n");
    for (id, name) in clients {
        csv_row(&mut clients_csv, &[&id.to_string(), name]);
    }
    let mut configs_csv = format!("{CONFIGURATIONS_CSV_HEADER}\n");
    for (id, client, name, hostname, serial, macs) in configurations {
        csv_row(
            &mut configs_csv,
            &[
                &id.to_string(),
                &client.to_string(),
                name,
                hostname,
                serial,
                macs,
            ],
        );
    }
    (clients_csv, configs_csv)
}

const GENERATED_ORG_BASE: u64 = 4_000_000;
const GENERATED_CONFIG_BASE: u64 = 10_000_000;

fn generated_name(org: usize) -> String {
    format!("Generated Customer {:05}", org + 1)
}

/// Identifiers of generated configuration number `n` (counting from 0 across the account):
/// serial, MAC (locally administered, never multicast, never a placeholder) and hostname.
fn generated_ids(org: usize, cfg: usize, n: usize) -> (String, String, String) {
    let n = n as u64 + 1;
    let serial = format!("GEN{n:09}");
    let mac = format!(
        "02:5c:{:02x}:{:02x}:{:02x}:{:02x}",
        (n >> 24) & 0xff,
        (n >> 16) & 0xff,
        (n >> 8) & 0xff,
        n & 0xff
    );
    let hostname = format!("c{:05}-dev{:04}", org + 1, cfg + 1);
    (serial, mac, hostname)
}

/// A large, clean account for benchmarks: `orgs` organizations with `configs_per_org`
/// configurations each; every record has exactly one match in [`generated_scopable_csv`].
pub fn generated_dataset(orgs: usize, configs_per_org: usize) -> Dataset {
    let mut organizations = Vec::with_capacity(orgs);
    let mut configurations = Vec::with_capacity(orgs.saturating_mul(configs_per_org));
    let mut n = 0usize;
    for org in 0..orgs {
        let org_id = GENERATED_ORG_BASE + org as u64 + 1;
        organizations.push(Org::new(org_id, &generated_name(org)));
        for cfg in 0..configs_per_org {
            let (serial, mac, hostname) = generated_ids(org, cfg, n);
            let id = GENERATED_CONFIG_BASE + n as u64 + 1;
            configurations.push(
                Config::new(id, org_id, &hostname.to_uppercase())
                    .with_hostname(&format!("{hostname}.generated.local"))
                    .with_serial(&serial)
                    .with_mac(&mac),
            );
            n += 1;
        }
    }
    Dataset {
        organizations,
        configurations,
        raw_organizations: Vec::new(),
        raw_configurations: Vec::new(),
    }
}

/// The Scopable side of [`generated_dataset`] with the same arguments, as
/// `(clients.csv, configurations.csv)`.
pub fn generated_scopable_csv(orgs: usize, configs_per_org: usize) -> (String, String) {
    let mut clients_csv = String::with_capacity(orgs * 32 + 16);
    let mut configs_csv = String::with_capacity(orgs.saturating_mul(configs_per_org) * 72 + 64);
    clients_csv.push_str(CLIENTS_CSV_HEADER);
    clients_csv.push('\n');
    configs_csv.push_str(CONFIGURATIONS_CSV_HEADER);
    configs_csv.push('\n');
    let mut n = 0usize;
    for org in 0..orgs {
        let client_id = org + 1;
        // Writing to a String cannot fail.
        let _ = writeln!(clients_csv, "{client_id},{}", generated_name(org));
        for cfg in 0..configs_per_org {
            let (serial, mac, hostname) = generated_ids(org, cfg, n);
            let _ = writeln!(
                configs_csv,
                "{},{client_id},Device {},{},{serial},{}",
                n + 1,
                cfg + 1,
                hostname.to_uppercase(),
                mac.to_uppercase().replace(':', "-"),
            );
            n += 1;
        }
    }
    (clients_csv, configs_csv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_736_154_000), "2025-01-06T09:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn sample_ids_are_unique_and_configs_point_at_orgs() {
        let ds = sample_dataset();
        let org_ids: BTreeSet<u64> = ds.organizations.iter().map(|o| o.id).collect();
        assert_eq!(org_ids.len(), ds.organizations.len());
        assert!(ds.organizations.len() >= 30);
        let cfg_ids: BTreeSet<u64> = ds.configurations.iter().map(|c| c.id).collect();
        assert_eq!(cfg_ids.len(), ds.configurations.len());
        for c in &ds.configurations {
            assert!(org_ids.contains(&c.organization_id), "config {}", c.id);
            let ifaces: BTreeSet<u64> = c.interfaces.iter().map(|i| i.id).collect();
            assert_eq!(ifaces.len(), c.interfaces.len());
        }
        // The secondary-interface case really has a MAC only on a non-primary interface.
        let lap = ds
            .configurations
            .iter()
            .find(|c| c.id == 8_200_105)
            .unwrap();
        assert_eq!(lap.interfaces.len(), 2);
        assert!(!lap.interfaces[1].primary);
        assert_eq!(lap.mac_address.as_deref(), Some("a4:bb:6d:11:22:33"));
    }

    #[test]
    fn sample_csv_has_headers_and_quotes_commas() {
        let (clients, configs) = sample_scopable_csv();
        assert!(clients.starts_with("id,name\n"));
        assert!(configs.starts_with("id,client_id,name,hostname,serial_number,mac_address\n"));
        assert!(clients.contains("\n118,\"VANARSDEL, LTD\"\n"));
        assert!(configs.contains("\" cz2841ab7q\""));
        assert!(configs.contains("b8:ca:3a:01:02:03; b8:ca:3a:01:02:04"));
        // Every configuration row has exactly six fields (no stray commas).
        for line in configs.lines().skip(1) {
            let mut fields = 0;
            let mut quoted = false;
            for ch in line.chars() {
                match ch {
                    '"' => quoted = !quoted,
                    ',' if !quoted => fields += 1,
                    _ => {}
                }
            }
            assert_eq!(fields, 5, "{line}");
        }
    }

    #[test]
    fn generated_data_is_consistent_and_fast() {
        let start = std::time::Instant::now();
        let ds = generated_dataset(2000, 50);
        let (clients, configs) = generated_scopable_csv(2000, 50);
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        assert_eq!(ds.organizations.len(), 2000);
        assert_eq!(ds.configurations.len(), 100_000);
        assert_eq!(clients.lines().count(), 2001);
        assert_eq!(configs.lines().count(), 100_001);
        let macs: BTreeSet<&str> = ds
            .configurations
            .iter()
            .filter_map(|c| c.mac_address.as_deref())
            .collect();
        assert_eq!(macs.len(), 100_000);
        // The last configuration's serial and MAC appear in the CSV's last row.
        let last = ds.configurations.last().unwrap();
        let row = configs.lines().last().unwrap();
        assert!(row.contains(last.serial_number.as_deref().unwrap()));
        let mac = last.mac_address.as_deref().unwrap().to_uppercase();
        assert!(row.contains(&mac.replace(':', "-")), "{row}");
    }
}
