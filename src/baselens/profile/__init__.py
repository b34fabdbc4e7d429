"""Stage 3 — profile: aggregate sites to wells, normalize to controls."""
