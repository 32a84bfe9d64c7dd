"""swiftcam inside a PyTorch training loop: explain the model's view of a fixed batch after every
epoch, without leaving the process or copying the network into another framework.

    python notebooks/training_loop.py [--epochs 3]      # needs torch and torchvision

swiftcam.from_torch reads the network once; model.update_weights refreshes the weights in place
each epoch (about the cost of one load; no new model, the CAM objects stay valid).
swiftcam.set_num_threads keeps the engine from fighting torch for the cores.
"""

import argparse
import time

import numpy as np
import torch
import torchvision

import swiftcam


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps per epoch")
    args = parser.parse_args()
    torch.manual_seed(0)
    threads = max(1, torch.get_num_threads())
    swiftcam.set_num_threads(threads)  # one pool at a time uses the cores: torch trains, then swiftcam explains

    net = torchvision.models.resnet18(num_classes=4)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    images = torch.randn(16, 3, 96, 96)
    labels = torch.randint(0, 4, (16,))
    probe = images[:2]

    model = swiftcam.from_torch(net.eval())
    cam = swiftcam.GradCAM(model=model, target_layers=[net.layer4[-1]])
    for epoch in range(args.epochs):
        net.train()
        for _ in range(args.steps):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(images), labels)
            loss.backward()
            optimizer.step()
        net.eval()
        start = time.perf_counter()
        model.update_weights(net)
        update_ms = 1000 * (time.perf_counter() - start)
        heat = cam(input_tensor=probe)
        with torch.no_grad():
            reference = net(probe).numpy()
        agreement = np.abs(cam.outputs - reference).max() / np.abs(reference).max()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, update_weights {update_ms:.1f} ms, "
              f"heatmaps {heat.shape}, logits vs torch {agreement:.1e} (relative)")
        assert agreement < 1e-4, "swiftcam and torch disagree"


if __name__ == "__main__":
    main()
