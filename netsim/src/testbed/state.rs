//! What one testbed is: its plan, its hosts and shapes, and its state file.
//!
//! Owns `Plan`, `Shape`, `State` and `Target` (names of namespaces, hosts
//! and addresses) and writing the state file atomically. It runs no command.

use super::*;

/// What `up` was asked for.
pub(super) struct Plan {
    pub(super) regions: u8,
    pub(super) hosts: u8,
    pub(super) link_rate: Option<String>,
    pub(super) link_loss: u8,
    pub(super) host_loss: u8,
    pub(super) host_rate: Option<String>,
}

/// Loss and rate of one host or link.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub(super) struct Shape {
    /// Percent of UDP dropped.
    pub(super) loss: u8,
    /// A tc rate (`11mbit`), if shaped.
    pub(super) rate: Option<String>,
}

/// A testbed as recorded on disk: enough for `down` to remove it and for
/// `loss`/`rate` to rebuild a namespace's rules from scratch.
#[derive(Serialize, Deserialize, Debug)]
pub(super) struct State {
    pub(super) name: String,
    pub(super) regions: u8,
    pub(super) hosts: u8,
    /// Every namespace the testbed has or may have created, in creation order.
    pub(super) namespaces: Vec<String>,
    /// By target label (`r0h1`, `link0`).
    pub(super) shapes: BTreeMap<String, Shape>,
}

/// Something that has a loss and a rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Target {
    Host { region: u8, host: u8 },
    Link(u8),
}

impl Target {
    pub(super) fn label(self) -> String {
        match self {
            Target::Host { region, host } => format!("r{region}h{host}"),
            Target::Link(region) => format!("link{region}"),
        }
    }
}

impl State {
    pub(super) fn new(name: &str, regions: u8, hosts: u8) -> State {
        let mut s = State { name: name.to_string(), regions, hosts, namespaces: Vec::new(), shapes: BTreeMap::new() };
        s.namespaces.push(s.hub());
        if s.routed() {
            s.namespaces.push(s.router());
        }
        for t in s.hosts_iter() {
            s.namespaces.push(s.namespace_of(t));
        }
        s
    }

    pub(super) fn routed(&self) -> bool {
        self.regions > 1
    }

    pub(super) fn hub(&self) -> String {
        format!("{}-hub", self.name)
    }

    pub(super) fn router(&self) -> String {
        format!("{}-rt", self.name)
    }

    pub(super) fn namespace_of(&self, t: Target) -> String {
        format!("{}-{}", self.name, t.label())
    }

    pub(super) fn hosts_iter(&self) -> impl Iterator<Item = Target> + use<> {
        let hosts = self.hosts;
        (0..self.regions).flat_map(move |region| (0..hosts).map(move |host| Target::Host { region, host }))
    }

    pub(super) fn targets(&self) -> Vec<Target> {
        let links = if self.routed() { (0..self.regions).map(Target::Link).collect() } else { Vec::new() };
        self.hosts_iter().chain(links).collect()
    }

    pub(super) fn shape(&self, t: Target) -> Shape {
        self.shapes.get(&t.label()).cloned().unwrap_or_default()
    }

    /// `r1h0` or `link1`, checked against this testbed's size.
    pub(super) fn target(&self, label: &str) -> Result<Target, String> {
        let found = self.targets().into_iter().find(|t| t.label() == label);
        found.ok_or_else(|| {
            let links = if self.routed() {
                format!(" or link0..link{}", self.regions - 1)
            } else {
                " (a one-region testbed has no links)".to_string()
            };
            format!(
                "testbed {} has no `{label}`: targets are r0h0..r{}h{}{links}",
                self.name,
                self.regions - 1,
                self.hosts - 1
            )
        })
    }

    /// The namespace `exec` runs in: a host, `router` or `hub`.
    pub(super) fn exec_namespace(&self, label: &str) -> Result<String, String> {
        match label {
            "hub" => Ok(self.hub()),
            "router" if self.routed() => Ok(self.router()),
            "router" => Err(format!("testbed {} has one region and no router", self.name)),
            _ => match self.target(label)? {
                t @ Target::Host { .. } => Ok(self.namespace_of(t)),
                Target::Link(_) => Err(format!("`{label}` is a link; exec runs in a host, `router` or `hub`")),
            },
        }
    }

    pub(super) fn describe(&self) -> String {
        let mut out = format!(
            "testbed {}: {} region(s) x {} host(s){}\n",
            self.name,
            self.regions,
            self.hosts,
            if self.routed() { format!(", router {}", self.router()) } else { String::new() }
        );
        for region in 0..self.regions {
            out += &format!("region {region}: bridge br{region} in {}", self.hub());
            if self.routed() {
                let link = self.shape(Target::Link(region));
                out += &format!(", router {}, link{region} {}", router_addr(region), shape_text(&link));
            }
            out += "\n";
            for host in 0..self.hosts {
                let t = Target::Host { region, host };
                out += &format!(
                    "  {:<9} {:<20} {:<12} {}\n",
                    t.label(),
                    self.namespace_of(t),
                    host_addr(region, host),
                    shape_text(&self.shape(t))
                );
            }
        }
        out
    }
}

pub(super) fn shape_text(s: &Shape) -> String {
    format!("loss {}% rate {}", s.loss, s.rate.as_deref().unwrap_or("-"))
}

pub(super) fn host_addr(region: u8, host: u8) -> String {
    format!("10.{}.0.{}", u16::from(region) + 1, u16::from(host) + 1)
}

pub(super) fn router_addr(region: u8) -> String {
    format!("10.{}.255.254", u16::from(region) + 1)
}

pub(super) fn state_path(which: &Which) -> PathBuf {
    which.state_dir.join(format!("{}.json", which.name))
}

pub(super) fn load(which: &Which) -> Result<State, String> {
    let path = state_path(which);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("no testbed named {} (no state file {})", which.name, path.display()));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

pub(super) fn save(which: &Which, state: &State) -> Result<(), String> {
    fs::create_dir_all(&which.state_dir).map_err(|e| format!("cannot create {}: {e}", which.state_dir.display()))?;
    let path = state_path(which);
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(state).map_err(|e| e.to_string())?;
    fs::write(&tmp, text + "\n").map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, &path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Files next to the state file that belong to the router daemon.
pub(super) fn daemon_file(which: &Which, suffix: &str) -> PathBuf {
    which.state_dir.join(format!("{}.smcroute.{suffix}", which.name))
}
