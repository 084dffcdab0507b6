//! Carbon per job: energy = Σ(device power × utilization × hours × count) × PUE, times the
//! grid intensity of the region. Tables ship in `data/carbon.toml` with their sources and can
//! be overridden; utilization defaults to 50% when a job did not measure it.

use serde::Deserialize;
use std::collections::HashMap;

/// Device power, grid intensities and facility overhead.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tables {
    pub pue: f64,
    pub default_utilization: f64,
    /// Board power in watts by device type (lower-case).
    pub device_watts: HashMap<String, f64>,
    /// Grid carbon intensity in gCO2e per kWh by region (lower-case).
    pub grid_g_per_kwh: HashMap<String, f64>,
    /// The GPUs each instance type holds (lower-case).
    #[serde(default)]
    pub instance_gpus: HashMap<String, InstanceGpus>,
}

/// The GPUs of one instance type.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InstanceGpus {
    pub gpu: String,
    pub count: u32,
}

/// Replacements and additions to the shipped tables (`[carbon]` in custos.toml).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub pue: Option<f64>,
    pub default_utilization: Option<f64>,
    pub device_watts: Vec<(String, f64)>,
    pub grid_g_per_kwh: Vec<(String, f64)>,
    pub instance_gpus: Vec<(String, InstanceGpus)>,
}

const SHIPPED: &str = include_str!("../data/carbon.toml");

impl Tables {
    /// The shipped tables (see `data/carbon.toml` for sources).
    pub fn shipped() -> Tables {
        // The shipped file is tested below; failing here would be a build defect.
        toml::from_str(SHIPPED).unwrap_or_else(|_| Tables {
            pue: 1.2,
            default_utilization: 0.5,
            device_watts: HashMap::new(),
            grid_g_per_kwh: HashMap::new(),
            instance_gpus: HashMap::new(),
        })
    }

    /// These tables with `o` laid over them (names compared without case).
    pub fn with(mut self, o: Overrides) -> Tables {
        if let Some(p) = o.pue {
            self.pue = p;
        }
        if let Some(u) = o.default_utilization {
            self.default_utilization = u;
        }
        let low = |k: String| k.to_ascii_lowercase();
        self.device_watts
            .extend(o.device_watts.into_iter().map(|(k, v)| (low(k), v)));
        self.grid_g_per_kwh
            .extend(o.grid_g_per_kwh.into_iter().map(|(k, v)| (low(k), v)));
        self.instance_gpus
            .extend(o.instance_gpus.into_iter().map(|(k, g)| {
                (
                    low(k),
                    InstanceGpus {
                        gpu: g.gpu.to_ascii_lowercase(),
                        ..g
                    },
                )
            }));
        self
    }

    /// The GPUs an instance type holds, when the tables know it.
    pub fn instance_gpus(&self, instance: &str) -> Option<&InstanceGpus> {
        self.instance_gpus.get(&instance.to_ascii_lowercase())
    }

    pub fn device_watts(&self, device: &str) -> Option<f64> {
        self.device_watts.get(&device.to_ascii_lowercase()).copied()
    }

    pub fn grid(&self, region: &str) -> Option<f64> {
        self.grid_g_per_kwh
            .get(&region.to_ascii_lowercase())
            .copied()
    }
}

/// One device class's part of a job.
#[derive(Clone, Copy, Debug)]
pub struct DeviceUse {
    pub watts: f64,
    pub count: f64,
    pub hours: f64,
    /// 0–1; `None` uses the tables' default.
    pub utilization: Option<f64>,
}

/// Energy and emissions of a job.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Footprint {
    pub kwh: f64,
    pub kg_co2e: f64,
}

/// The footprint of `devices` in a region with `grid_g_per_kwh`.
pub fn footprint(t: &Tables, devices: &[DeviceUse], grid_g_per_kwh: f64) -> Footprint {
    let wh: f64 = devices
        .iter()
        .map(|d| {
            let u = d
                .utilization
                .unwrap_or(t.default_utilization)
                .clamp(0.0, 1.0);
            d.watts.max(0.0) * u * d.hours.max(0.0) * d.count.max(0.0)
        })
        .sum();
    let kwh = wh / 1000.0 * t.pue;
    Footprint {
        kwh,
        kg_co2e: kwh * grid_g_per_kwh.max(0.0) / 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_tables_parse() {
        let t: Tables = toml::from_str(SHIPPED).unwrap();
        assert_eq!(t.device_watts("H100"), Some(700.0));
        assert_eq!(t.grid("eu-north-1"), Some(41.0));
        assert!(t.grid("atlantis").is_none());
        // Every instance's GPU has a power figure.
        for (name, g) in &t.instance_gpus {
            assert!(t.device_watts(&g.gpu).is_some(), "{name}: {}", g.gpu);
        }
        assert_eq!(t.instance_gpus("P4D.24xlarge").map(|g| g.count), Some(8));
    }

    #[test]
    fn overrides_replace_and_add() {
        let t = Tables::shipped().with(Overrides {
            pue: Some(1.1),
            grid_g_per_kwh: vec![("Mars-1".into(), 10.0), ("us-east-1".into(), 300.0)],
            instance_gpus: vec![(
                "my.gpu".into(),
                InstanceGpus {
                    gpu: "H100".into(),
                    count: 2,
                },
            )],
            ..Overrides::default()
        });
        assert_eq!(t.pue, 1.1);
        assert_eq!(t.grid("mars-1"), Some(10.0));
        assert_eq!(t.grid("us-east-1"), Some(300.0));
        assert_eq!(t.grid("eu-north-1"), Some(41.0), "the rest is kept");
        assert_eq!(t.instance_gpus("my.gpu").unwrap().gpu, "h100");
    }

    #[test]
    fn eight_h100_for_ten_hours() {
        let t = Tables::shipped();
        let f = footprint(
            &t,
            &[DeviceUse {
                watts: 700.0,
                count: 8.0,
                hours: 10.0,
                utilization: None,
            }],
            400.0,
        );
        // 700 W × 0.5 × 10 h × 8 = 28 kWh; × 1.2 PUE = 33.6 kWh; × 0.4 kg/kWh = 13.44 kg.
        assert!((f.kwh - 33.6).abs() < 1e-9);
        assert!((f.kg_co2e - 13.44).abs() < 1e-9);
    }
}
