"""Pure decisions about media: slot selection, dominant speaker, bitrate caps."""
