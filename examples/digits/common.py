"""What the digits example's launcher and workers share: the data (scikit-
learn's 8x8 digits, shipped by Debian's python3-sklearn, loaded offline),
the MLP, and each mode's optimizer and consistency settings."""

import numpy as np

BATCH = 32
EPOCHS = 20
HIDDEN = 128
# fc1.weight has 64 x 128 = 8192 elements: above this, the shards split it.
SPLIT_THRESHOLD = 4096
WORKERS = 4
SHARDS = 2

OPTIMIZER = {
    # Asynchronous workers each take a step: 4 steps per round of batches.
    "async": {"name": "AdamW", "lr": 4e-3, "weight_decay": 1e-4},
    # One step per round of 4 averaged gradients (a batch of 128): a larger lr.
    "sync": {"name": "AdamW", "lr": 8e-3, "weight_decay": 1e-4},
    "ssp": {"name": "AdamW", "lr": 4e-3, "weight_decay": 1e-4},
}


def schedule(mode, steps_per_worker, workers):
    """The lr decays to 0 along a cosine over the model's steps (the server
    counts them: every push in async and ssp, one per round in sync)."""
    steps = steps_per_worker * (1 if mode == "sync" else workers)
    return {"name": "CosineAnnealingLR", "T_max": steps}


CONSISTENCY = {
    "async": None,
    "sync": {"mode": "sync", "workers": WORKERS, "timeout": 60},
    "ssp": {"mode": "ssp", "workers": WORKERS, "staleness": 2, "timeout": 60},
}


def load():
    """(x_train, y_train, x_test, y_test): 1437 and 360 images, pixels
    scaled to [0, 1], a fixed stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0,
                                                        stratify=y)
    return x_train, y_train, x_test, y_test


def mlp(torch):
    return torch.nn.Sequential(torch.nn.Linear(64, HIDDEN), torch.nn.ReLU(),
                               torch.nn.Linear(HIDDEN, 10))


def accuracy(weights, x, y):
    """Test accuracy of the MLP's weights (paramd's names: "0.weight", ...),
    computed with numpy."""
    hidden = np.maximum(x @ weights["0.weight"].T + weights["0.bias"], 0)
    logits = hidden @ weights["2.weight"].T + weights["2.bias"]
    return float(np.mean(np.argmax(logits, axis=1) == y))
