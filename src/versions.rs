//! What differs between the Kubernetes versions kubeforge supports: one row per minor, from
//! `kubeadm-facts.md` §6 (v1.33, v1.34) and `kubeadm-facts-v135-v137.md` (v1.35–v1.37). Everything in the output
//! that depends on the version asks this table; nothing else compares minor numbers.
//!
//! v1.31 and v1.32 are not supported: both are more than a year past upstream's support window, kubeadm of any
//! supported minor cannot upgrade from them, and a cluster on them reaches v1.33 with kubeadm first. v1.33 and
//! v1.34 stay for clusters being upgraded, with a warning on every run.

/// The facts of one minor version, as the kubeadm of that minor writes its output.
#[derive(Debug)]
pub struct Facts {
    pub minor: u32,
    /// Within upstream's support window today (v1.35, v1.36, v1.37); the others warn on every run.
    pub supported_upstream: bool,
    /// kubeadm's default etcd image tag, by the first patch release that pins it.
    etcd_tags: &'static [(u32, &'static str)],
    /// The sandbox (pause) image kubeadm pins (`PauseVersion`).
    pub pause: &'static str,
    /// Probes name their port `probe-port`, declared in the container's ports (v1.34+, kubeadm-facts §3.0).
    pub named_probe_port: bool,
    /// Manifests carry `creationTimestamp: null` (the serializer before v1.34).
    pub creation_timestamp_null: bool,
    /// On a control-plane node kubelet.conf points at the local apiserver (ControlPlaneKubeletLocalMode: beta
    /// and on in v1.33, GA in v1.35, the gate removed in v1.36).
    pub kubelet_local_apiserver: bool,
    /// The controller-manager mounts `flexvolume-dir` (removed in v1.36, §2.3 of the v1.35–v1.37 sheet).
    pub flexvolume_dir: bool,
    /// etcd's corrupt-check and progress-notify flags follow the etcd image: the `--experimental-*` names below
    /// etcd 3.6 (v1.34, v1.35). From v1.36 kubeadm always writes the etcd 3.6 names (P9).
    pub etcd_flags_follow_image: bool,
    /// kubeadm writes `--pod-infra-container-image=<imageRepository>/pause:<pause>` into kubeadm-flags.env (up to
    /// v1.34; the kubelet of v1.35 removed the flag, the sandbox image is the container runtime's setting).
    pub pause_flag: bool,
    /// CoreDNS's tag, for `images` (kubeadm's `config images list` names it; kubeforge does not deploy it).
    pub coredns: &'static str,
    /// Component feature gates this minor removed (kube-apiserver, -controller-manager, -scheduler): naming one
    /// makes the component exit (v1.35–v1.37 sheet §7). Removals before v1.35 are not tracked.
    pub removed_gates: &'static [&'static str],
    /// Gates this minor locked, with the only value they take from this minor until their removal.
    pub locked_gates: &'static [(&'static str, bool)],
}

const TABLE: [Facts; 5] = [
    Facts {
        minor: 33,
        supported_upstream: false,
        etcd_tags: &[(0, "3.5.21-0")],
        // UNVERIFIED: the sheet gives 3.10 for the v1.32 branch and 3.10.1 for v1.34; v1.33 is taken as 3.10.
        pause: "3.10",
        named_probe_port: false,
        creation_timestamp_null: true,
        kubelet_local_apiserver: true,
        flexvolume_dir: true,
        etcd_flags_follow_image: true,
        pause_flag: true,
        // UNVERIFIED: CoreDNS v1.12.0 for v1.33 is taken from kubeadm's constants of that branch, not the sheets.
        coredns: "v1.12.0",
        removed_gates: &[],
        locked_gates: &[],
    },
    Facts {
        minor: 34,
        supported_upstream: false,
        // v1.34.0 and v1.34.1 pinned 3.6.4-0, later patches 3.6.5-0 (kubeadm-facts §3.4).
        etcd_tags: &[(0, "3.6.4-0"), (2, "3.6.5-0")],
        pause: "3.10.1",
        named_probe_port: true,
        creation_timestamp_null: false,
        kubelet_local_apiserver: true,
        flexvolume_dir: true,
        etcd_flags_follow_image: true,
        pause_flag: true,
        coredns: "v1.12.1",
        removed_gates: &[],
        locked_gates: &[],
    },
    Facts {
        minor: 35,
        supported_upstream: true,
        etcd_tags: &[(0, "3.6.6-0")],
        pause: "3.10.1",
        named_probe_port: true,
        creation_timestamp_null: false,
        kubelet_local_apiserver: true,
        flexvolume_dir: true,
        etcd_flags_follow_image: true,
        pause_flag: false,
        coredns: "v1.13.1",
        removed_gates: &[
            "StrictCostEnforcementForVAP",
            "StrictCostEnforcementForWebhooks",
            "ComponentSLIs",
            "SizeMemoryBackedVolumes",
            "UserNamespacesPodSecurityStandards",
        ],
        locked_gates: &[
            ("DynamicResourceAllocation", true),
            ("ExecProbeTimeout", true),
            ("AllowOverwriteTerminationGracePeriodSeconds", true),
            ("SystemdWatchdog", true),
            ("AggregatedDiscoveryRemoveBetaType", true),
            ("JobManagedBy", true),
        ],
    },
    Facts {
        minor: 36,
        supported_upstream: true,
        etcd_tags: &[(0, "3.6.8-0")],
        pause: "3.10.2",
        named_probe_port: true,
        creation_timestamp_null: false,
        kubelet_local_apiserver: true,
        flexvolume_dir: false,
        etcd_flags_follow_image: false,
        pause_flag: false,
        coredns: "v1.14.2",
        removed_gates: &[
            "WatchFromStorageWithoutResourceVersion",
            "HonorPVReclaimPolicy",
            "CSIMigrationPortworx",
            "InTreePluginPortworxUnregister",
        ],
        locked_gates: &[
            ("VolumeAttributesClass", true),
            ("DisableNodeKubeProxyVersion", true),
            ("MutableCSINodeAllocatableCount", true),
            ("SeparateCacheWatchRPC", false),
        ],
    },
    Facts {
        minor: 37,
        supported_upstream: true,
        // etcd 3.7.1 was kept out of v1.37 (P13). UNVERIFIED: a full v1.37 etcd.yaml was not observed; etcd 3.7
        // keeps --snapshot-count (P16), so the flags are taken to be v1.36's.
        etcd_tags: &[(0, "3.7.0-0")],
        pause: "3.10.2",
        named_probe_port: true,
        creation_timestamp_null: false,
        kubelet_local_apiserver: true,
        flexvolume_dir: false,
        etcd_flags_follow_image: false,
        pause_flag: false,
        coredns: "v1.14.6",
        removed_gates: &[
            "AnyVolumeDataSource",
            "RetryGenerateName",
            "BtreeWatchCache",
            "OrderedNamespaceDeletion",
            "StreamingCollectionEncodingToJSON",
            "StreamingCollectionEncodingToProtobuf",
            "APIServerTracing",
            "ResilientWatchCacheInitialization",
            "ConsistentListFromCache",
            "RelaxedDNSSearchValidation",
            "SidecarContainers",
            "PreventStaticPodAPIReferences",
            "GangScheduling",
            "WorkloadAwarePreemption",
        ],
        locked_gates: // DeclarativeValidationTakeover is locked in v1.37 too, but the sheet does not say to which value, so it is not
        // checked. UNVERIFIED: the removal list is from the alpha.1 notes and a July draft; later removals may be missing.
        &[],
    },
];

/// The supported minors, oldest first.
pub fn minors() -> impl Iterator<Item = u32> {
    TABLE.iter().map(|f| f.minor)
}

pub fn facts(minor: u32) -> Option<&'static Facts> {
    TABLE.iter().find(|f| f.minor == minor)
}

impl Facts {
    /// kubeadm's default etcd image tag for `patch` of this minor.
    pub fn etcd_tag(&self, patch: u32) -> &'static str {
        self.etcd_tags.iter().rev().find(|(from, _)| patch >= *from).map(|(_, t)| *t).expect("a tag from patch 0")
    }

    /// The warning every run prints for a version past upstream support.
    pub fn support_warning(&self) -> Option<String> {
        (!self.supported_upstream).then(|| {
            let newest = TABLE.iter().filter(|f| f.supported_upstream).map(|f| f.minor).collect::<Vec<_>>();
            format!(
                "Kubernetes v1.{} is past upstream support; kubeforge keeps it for clusters being upgraded. Upgrade \
                 one minor at a time (v1.{} next) to a supported one (v1.{} to v1.{}).",
                self.minor,
                self.minor + 1,
                newest.first().unwrap(),
                newest.last().unwrap()
            )
        })
    }
}

impl Facts {
    /// Every gate removed up to this minor (removals accumulate).
    pub fn removed_gate(&self, gate: &str) -> Option<u32> {
        TABLE.iter().filter(|f| f.minor <= self.minor).find(|f| f.removed_gates.contains(&gate)).map(|f| f.minor)
    }

    /// The value a gate is locked to in this minor, and the minor that locked it.
    pub fn locked_gate(&self, gate: &str) -> Option<(bool, u32)> {
        TABLE
            .iter()
            .filter(|f| f.minor <= self.minor)
            .find_map(|f| f.locked_gates.iter().find(|(g, _)| *g == gate).map(|(_, v)| (*v, f.minor)))
    }
}

/// Whether an etcd image tag (`3.5.21-0`) is etcd 3.6 or later.
pub fn etcd_at_least_36(tag: &str) -> bool {
    let mut parts = tag.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (3, 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_minor_has_its_facts() {
        assert_eq!(minors().collect::<Vec<_>>(), [33, 34, 35, 36, 37]);
        assert_eq!(facts(34).unwrap().etcd_tag(1), "3.6.4-0");
        assert_eq!(facts(34).unwrap().etcd_tag(2), "3.6.5-0");
        assert_eq!(facts(37).unwrap().etcd_tag(9), "3.7.0-0");
        assert!(facts(32).is_none());
        assert!(facts(33).unwrap().support_warning().unwrap().contains("v1.34 next"));
        assert!(facts(35).unwrap().support_warning().is_none());
        assert!(!etcd_at_least_36("3.5.21-0") && etcd_at_least_36("3.6.0-0") && etcd_at_least_36("3.7.0-0"));
        assert!(etcd_at_least_36("4.0.0"));
        // Removals and locks accumulate from the minor that made them.
        assert_eq!(facts(34).unwrap().removed_gate("ComponentSLIs"), None);
        assert_eq!(facts(37).unwrap().removed_gate("ComponentSLIs"), Some(35));
        assert_eq!(facts(36).unwrap().locked_gate("JobManagedBy"), Some((true, 35)));
        assert_eq!(facts(36).unwrap().locked_gate("SeparateCacheWatchRPC"), Some((false, 36)));
        assert_eq!(facts(35).unwrap().locked_gate("SeparateCacheWatchRPC"), None);
    }
}
