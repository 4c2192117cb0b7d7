"""Training speed of the easy-VQA generator's layout in PyTorch + diffusers + transformers:
the same UNet2DConditionModel and CLIP text encoder (configs and weights read from a Braid
generator folder), trained jointly as `braid train` does (DDPM noise-prediction MSE at a
random timestep per image, AdamW, gradient clipping at 1.0), on a batch of 32x32 images and
8-token captions. Prints one JSON line: samples/s over STEPS steps after 3 warm-up steps.

    python bench/diffusion_train_speed.py FOLDER [STEPS=30] [BATCH=16] [THREADS=2]
"""
import json
import sys
import time

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

folder = sys.argv[1]
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 30
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 16
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
torch.set_num_threads(threads)
torch.manual_seed(0)

unet = UNet2DConditionModel.from_pretrained(f"{folder}/unet")
text = CLIPTextModel.from_pretrained(f"{folder}/text_encoder")
sched = DDPMScheduler(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02,
                      beta_schedule="linear")
cfg = CLIPTextConfig.from_pretrained(f"{folder}/text_encoder")
size = unet.config.sample_size
params = list(unet.parameters()) + list(text.parameters())
opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
unet.train()
text.train()

images = torch.rand(batch, 3, size, size) * 2 - 1
ids = torch.randint(0, cfg.vocab_size, (batch, cfg.max_position_embeddings))


def step():
    noise = torch.randn_like(images)
    t = torch.randint(0, 1000, (batch,))
    noisy = sched.add_noise(images, noise, t)
    cond = text(input_ids=ids).last_hidden_state
    pred = unet(noisy, t, encoder_hidden_states=cond).sample
    loss = torch.nn.functional.mse_loss(pred, noise)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


for _ in range(3):
    step()
start = time.perf_counter()
for _ in range(steps):
    step()
secs = time.perf_counter() - start
print(json.dumps({"tool": "pytorch", "torch": torch.__version__, "threads": threads,
                  "batch": batch, "steps": steps, "samples_per_s": round(batch * steps / secs, 3)}))
