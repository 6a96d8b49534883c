//! The model registry: every model family the runner can run, named once in the `families!`
//! invocation below. Everything else about a family (its `[model]` keys, its statistics, how
//! its members are built, trained and loaded) comes from its crate's
//! [`blindspot_core::Family`] impl; adding a model is one crate and one line here
//! (docs/ARCHITECTURE.md, "Adding a model").

use std::path::Path;

use blindspot_core::{Family, InvalidConfig, Members, ModelStat, TrainJob};
use blindspot_kernels::{ConvAutodiffBackend, ConvBackend};
use blindspot_ood::Statistic;
use serde::{Deserialize, Serialize};

/// `[model]` of one family: `kind` and that family's own keys, in a tagged form that keeps
/// `kind` first when written.
#[derive(Serialize)]
struct Tagged<'a, S> {
    kind: &'static str,
    #[serde(flatten)]
    settings: &'a S,
}

/// The kind of a `[model]` table that does not name one.
const DEFAULT_KIND: &str = "vae";

macro_rules! families {
    ($($variant:ident => $family:ty),+ $(,)?) => {
        /// `[model]`: the family (`kind`, default `vae`) with its own settings; a key the family
        /// does not have is an error.
        #[derive(Debug, Clone, PartialEq)]
        pub enum ModelConfig {
            $(
                #[doc = concat!("`kind = \"", stringify!($variant), "\"`: [`", stringify!($family), "`].")]
                $variant(<$family as Family>::Settings),
            )+
        }

        impl ModelConfig {
            /// The `kind` of every family, in registry order.
            pub const KINDS: &'static [&'static str] = &[$(<$family as Family>::KIND),+];

            /// Its `kind`.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => <$family as Family>::KIND,)+
                }
            }

            /// The family's name in reports.
            pub fn label(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => <$family as Family>::LABEL,)+
                }
            }

            /// The per-slice statistics of the family's inference.
            pub fn model_statistics(&self) -> &'static [ModelStat] {
                match self {
                    $(Self::$variant(_) => <$family as Family>::STATISTICS,)+
                }
            }

            /// The latent dimensions its KL statistic is averaged over (0: no KL).
            pub fn latent_dims(&self) -> usize {
                match self {
                    $(Self::$variant(s) => <$family as Family>::latent_dims(s),)+
                }
            }

            /// Checks the settings for `input_size`² slices.
            ///
            /// # Errors
            /// The family's refusal, naming the key.
            pub fn validate(&self, input_size: usize) -> Result<(), InvalidConfig> {
                match self {
                    $(Self::$variant(s) => <$family as Family>::config(s, input_size).map(drop),)+
                }
            }

            /// Trains the members of `job`.
            ///
            /// # Errors
            /// The family's refusal of a setting, and training errors.
            pub fn train<B: ConvAutodiffBackend>(
                &self,
                input_size: usize,
                job: &TrainJob<'_, B>,
            ) -> blindspot_core::Result<()> {
                match self {
                    $(Self::$variant(s) => {
                        let c = <$family as Family>::config(s, input_size)?;
                        <$family as Family>::train::<B>(&c, job)?;
                    })+
                }
                Ok(())
            }

            /// The last checkpoint of members `0..members` under `run_dir`.
            ///
            /// # Errors
            /// The family's refusal of a setting, a missing or corrupt checkpoint.
            pub fn load<B: ConvBackend>(
                &self,
                input_size: usize,
                run_dir: &Path,
                members: usize,
                device: &B::Device,
            ) -> blindspot_core::Result<Box<dyn Members<B>>> {
                Ok(match self {
                    $(Self::$variant(s) => {
                        let c = <$family as Family>::config(s, input_size)?;
                        <$family as Family>::load::<B>(&c, run_dir, members, device)?
                    })+
                })
            }

            /// The settings of family `kind` from `table` (the `[model]` keys but `kind`).
            fn from_table(kind: &str, table: toml::Table) -> Result<Self, String> {
                $(
                    if kind == <$family as Family>::KIND {
                        return table
                            .try_into()
                            .map(Self::$variant)
                            .map_err(|e| format!("[model] kind = \"{kind}\": {}", e.message()));
                    }
                )+
                Err(format!(
                    "[model] kind = \"{kind}\" is not a model family; allowed: {}",
                    Self::KINDS.join(", ")
                ))
            }
        }

        impl Serialize for ModelConfig {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $(Self::$variant(settings) => Tagged {
                        kind: <$family as Family>::KIND,
                        settings,
                    }
                    .serialize(serializer),)+
                }
            }
        }
    };
}

families! {
    Vae => blindspot_vae::VaeFamily,
    Ae => blindspot_ae::AeFamily,
    Dae => blindspot_ae::DaeFamily,
    Flow => blindspot_flow::FlowFamily,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig::Vae(Default::default())
    }
}

impl<'de> Deserialize<'de> for ModelConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(deserializer)?;
        let kind = match table.remove("kind") {
            None => DEFAULT_KIND.to_owned(),
            Some(toml::Value::String(k)) => k,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "[model] kind = {other} is not a string; allowed: {}",
                    Self::KINDS.join(", ")
                )));
            }
        };
        Self::from_table(&kind, table).map_err(D::Error::custom)
    }
}

impl ModelConfig {
    /// The statistics the pipeline can compute for this family, in [`Statistic::ALL`]'s order:
    /// those its inference reports (`rec_err`, `kl`, a log-likelihood), those computed from
    /// them (the ELBOs, WAIC over either), and those every family has (residual entropies and
    /// levels, the input's intensity, DoSE).
    pub fn statistics(&self) -> Vec<Statistic> {
        let reported: Vec<Statistic> = self
            .model_statistics()
            .iter()
            .filter_map(|&s| Self::pipeline_statistic(s))
            .collect();
        let has = |s: Statistic| reported.contains(&s);
        let (rec, kl, ll) = (
            has(Statistic::RecErr),
            has(Statistic::Kl),
            has(Statistic::LogLikelihood),
        );
        let elbo = rec && kl;
        Statistic::ALL
            .into_iter()
            .filter(|s| match s {
                Statistic::RecErr => rec,
                Statistic::Kl => kl,
                Statistic::NegElbo | Statistic::WaicNegElbo => elbo || ll,
                Statistic::CodedElbo | Statistic::Waic => elbo,
                Statistic::LogLikelihood => ll,
                Statistic::Entropy
                | Statistic::EntropyClean
                | Statistic::Dose
                | Statistic::DoseDensitySum
                | Statistic::ResidualMedian
                | Statistic::ResidualQ95
                | Statistic::ResidualPeak
                | Statistic::ResidualSpot
                | Statistic::IntensityMedian
                | Statistic::IntensityIqr
                | Statistic::IntensitySkew => true,
                // need a model of the latent space or of the log-likelihood's distribution
                // that no family's inference provides
                Statistic::Typicality | Statistic::Mahalanobis => false,
            })
            .collect()
    }

    /// The pipeline statistic a model statistic becomes; `None` for one the pipeline reads in
    /// another form. Exhaustive: a statistic added to [`ModelStat`] does not compile until it
    /// is placed here.
    pub fn pipeline_statistic(s: ModelStat) -> Option<Statistic> {
        match s {
            ModelStat::RecErr => Some(Statistic::RecErr),
            ModelStat::KlDiv => Some(Statistic::Kl),
            ModelStat::LogLikelihood => Some(Statistic::LogLikelihood),
            // the log-likelihood in bits per dimension: the pipeline reads `log_likelihood`
            ModelStat::BitsPerDim => None,
        }
    }

    /// The statistics DoSE combines: those of the model that every non-empty slice has.
    pub fn dose_statistics(&self) -> Vec<Statistic> {
        let provided = self.statistics();
        [Statistic::RecErr, Statistic::Kl, Statistic::NegElbo]
            .into_iter()
            .filter(|s| provided.contains(s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ModelConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn each_kind_has_its_own_keys() {
        assert_eq!(parse("").unwrap(), ModelConfig::default());
        let flow = parse("kind = \"flow\"\nlevels = 2\nsteps_per_level = 3").unwrap();
        let ModelConfig::Flow(s) = &flow else {
            panic!("{flow:?}")
        };
        assert_eq!((s.levels, s.steps_per_level), (2, 3));
        let dae = parse("kind = \"dae\"\nnoise_std = 0.5").unwrap();
        assert_eq!(dae.kind(), "dae");
        for (text, needles) in [
            (
                "kind = \"flow\"\nlatent_dim = 4",
                &["latent_dim", "flow"][..],
            ),
            (
                "kind = \"ae\"\nbeta = { kind = \"constant\", beta = 0.1 }",
                &["beta"],
            ),
            ("kind = \"ae\"\nnoise_std = 0.1", &["noise_std"]),
            ("kind = \"gan\"", &["gan", "vae, ae, dae, flow"]),
            ("kind = 3", &["not a string"]),
        ] {
            let err = parse(text).expect_err(text).to_string();
            for n in needles {
                assert!(err.contains(n), "{text:?}: {err}");
            }
        }
    }

    #[test]
    fn written_with_kind_first_and_read_back() {
        for kind in ModelConfig::KINDS {
            let m = parse(&format!("kind = \"{kind}\"")).unwrap();
            let text = toml::to_string(&m).unwrap();
            assert!(text.starts_with(&format!("kind = \"{kind}\"")), "{text}");
            assert_eq!(parse(&text).unwrap(), m);
        }
    }

    #[test]
    fn statistics_follow_what_the_model_reports() {
        let vae = ModelConfig::default();
        assert!(vae.statistics().contains(&Statistic::Waic));
        assert_eq!(
            vae.dose_statistics(),
            [Statistic::RecErr, Statistic::Kl, Statistic::NegElbo]
        );
        let ae = parse("kind = \"ae\"").unwrap();
        assert_eq!(ae.dose_statistics(), [Statistic::RecErr]);
        assert!(!ae.statistics().contains(&Statistic::NegElbo));
        let flow = parse("kind = \"flow\"").unwrap();
        assert_eq!(flow.dose_statistics(), [Statistic::NegElbo]);
        assert!(flow.statistics().contains(&Statistic::WaicNegElbo));
        assert!(!flow.statistics().contains(&Statistic::Waic));
    }
}
