#!/usr/bin/env python3
"""PyTorch side of `cargo bench --bench cnn`: the same networks (torchvision
AlexNet and VGG-16, LeNet-5 as in examples/lenet.rs) at the same batch sizes,
CPU, 2 threads (or $THREADS), eager and inference_mode, median of rounds.

    python3 scripts/bench_cnn_torch.py [rounds]
"""
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torchvision


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2).flatten(1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def bench(name, model, shape, rounds):
    x = torch.rand(shape)
    with torch.inference_mode():
        model(x)
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t) * 1e3)
    print(f"| {name} | {statistics.median(times):.2f} |")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    print("| workload | torch eager ms |\n| --- | --- |")
    lenet = LeNet().eval()
    bench("LeNet-5, batch 1", lenet, (1, 1, 28, 28), rounds * 3)
    bench("LeNet-5, batch 256", lenet, (256, 1, 28, 28), rounds * 3)
    alex = torchvision.models.alexnet(weights=None).eval()
    bench("AlexNet, batch 1", alex, (1, 3, 224, 224), rounds * 2)
    bench("AlexNet, batch 8", alex, (8, 3, 224, 224), rounds)
    bench("VGG-16, batch 1", torchvision.models.vgg16(weights=None).eval(), (1, 3, 224, 224), max(rounds // 2, 3))


if __name__ == "__main__":
    main()
