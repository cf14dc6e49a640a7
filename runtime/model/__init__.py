"""The model: `network.EncoderDecoder` (config -> transformer layers -> adaptors and output heads),
its configuration, encoder adaptors (`adaptors`), output heads and their losses (`heads/`), the
generation-time weight layouts (`layout`) and device/precision choice (`device`)."""
