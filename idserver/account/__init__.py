"""The citizen's own Bürger-ID session and self-service pages."""
