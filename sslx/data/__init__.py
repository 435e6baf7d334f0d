"""sslx.data: dataset sources, the labeled/unlabeled protocol, and samplers.

Two paths from ``config.data`` to the train step:

* **Device-resident** (digits, MNIST, CIFAR, SVHN, STL-10, npz)::

    ds = load_dataset(config.data)            # host numpy, validated, split drawn
    ds.save_split(workdir)                    # labeled_indices.json
    arrays = to_device(ds, mesh)              # placed once
    # inside the jitted step (arrays passed as an argument):
    batch = sample_batch(arrays, sample_key, step,
                         labeled_batch_size=64, unlabeled_batch_size=448)

* **Streaming** (imagenet2012; ``config.data.streaming=True``)::

    sds = load_streaming_dataset(config.data)
    it = sds.train_iterator(labeled_batch_size=64, unlabeled_batch_size=320, seed=0,
                            start_step=step)
    host_batch = next(it)                     # this process's share, same keys
"""

from sslx.data.config import DATASET_NAMES
from sslx.data.config import default_data_config
from sslx.data.config import TFDS_NAMES
from sslx.data.config import validate_data_config
from sslx.data.dataset import load_dataset
from sslx.data.dataset import normalization_stats
from sslx.data.dataset import read_split
from sslx.data.dataset import SPLIT_FILENAME
from sslx.data.dataset import SSLDataset
from sslx.data.sampler import gather_rows
from sslx.data.sampler import sample_batch
from sslx.data.sampler import sample_indices
from sslx.data.sampler import to_device
from sslx.data.sources import DatasetNotPreparedError
from sslx.data.sources import prepare_instructions
from sslx.data.split import balanced_labeled_indices
from sslx.data.split import unlabeled_indices
from sslx.data.streaming import load_streaming_dataset
from sslx.data.streaming import StreamingDataset

__all__ = [
    "DATASET_NAMES", "TFDS_NAMES", "default_data_config", "validate_data_config",
    "load_dataset", "SSLDataset", "read_split", "SPLIT_FILENAME", "normalization_stats",
    "to_device", "sample_indices", "sample_batch", "gather_rows",
    "DatasetNotPreparedError", "prepare_instructions",
    "balanced_labeled_indices", "unlabeled_indices",
    "load_streaming_dataset", "StreamingDataset",
]
