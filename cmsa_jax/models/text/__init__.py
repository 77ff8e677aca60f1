"""Text encoders: Eq.1's word features e_n."""
