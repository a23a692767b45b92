"""Model files: sniffing the format, pickle safety, and one loader per format."""
