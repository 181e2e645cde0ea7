"""ASR workers: the pure streaming core, the model seam, and (later) the leased worker loop."""
