//! The modalities Braid encodes and generates.

use serde::{Deserialize, Serialize};

/// A kind of signal. The prompt placeholder of each is `<name>` (`<image>`, `<imu>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// Token ids or strings.
    Text,
    /// Still images.
    Image,
    /// Waveforms.
    Audio,
    /// Frame sequences.
    Video,
    /// Inertial sensors and other multichannel time series.
    Imu,
}

impl Modality {
    /// Every modality, in a fixed order.
    pub const ALL: [Modality; 5] = [Self::Text, Self::Image, Self::Audio, Self::Video, Self::Imu];

    /// Lower-case name, as in configs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Imu => "imu",
        }
    }

    /// The prompt placeholder that projected tokens of this modality replace.
    pub fn placeholder(self) -> String {
        format!("<{}>", self.name())
    }
}

impl std::fmt::Display for Modality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Modality {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| crate::Error::unknown("modality", s, Self::ALL.map(|m| m.name())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Modality::ALL {
            assert_eq!(m.name().parse::<Modality>().unwrap(), m);
        }
        assert_eq!(Modality::Imu.placeholder(), "<imu>");
        assert!("smell".parse::<Modality>().unwrap_err().to_string().contains("known: text"));
    }
}
