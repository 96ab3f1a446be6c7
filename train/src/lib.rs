//! Training, evaluation and export of the seed's CIFAR-10 models (binary `train`).
