"""Sampling speed of a diffusers-layout model: diffusers (PyTorch) against `braid draw`,
same machine, same run, same folder, same steps and guidance, one image at a time.

  PYTHON=/path/to/venv/bin/python bench/diffusion_speed.sh FOLDER [STEPS] [IMAGES]

For each side: seconds per image (model loading excluded: braid's own "s an image"
figure, diffusers' loop timed around the calls) and peak RSS of the whole process.
The diffusers side runs StableDiffusionPipeline where the folder has a VAE; for Braid's
pixel-space folders (no VAE) it runs the same DDIM loop by hand: text encoder, UNet on
the unconditional and conditional branch together, guidance, `DDIMScheduler.step`.
Threads: torch.set_num_threads(os.cpu_count()), braid's default (every core).
"""
import json
import os
import resource
import sys
import time

import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from tokenizers import Tokenizer
from transformers import CLIPTextModel


def main():
    folder, steps, images = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    prompt, guidance = "a red circle", 3.0
    torch.set_num_threads(os.cpu_count())
    index = json.load(open(os.path.join(folder, "model_index.json")))
    with torch.no_grad():
        if index.get("vae", [None])[0] is None:
            unet = UNet2DConditionModel.from_pretrained(os.path.join(folder, "unet")).eval()
            text = CLIPTextModel.from_pretrained(os.path.join(folder, "text_encoder")).eval()
            sched = DDIMScheduler.from_pretrained(os.path.join(folder, "scheduler"))
            tok = Tokenizer.from_file(os.path.join(folder, "tokenizer", "tokenizer.json"))
            n = text.config.max_position_embeddings
            eos = tok.token_to_id("<|endoftext|>")

            def ids(t):
                v = tok.encode(t).ids
                return torch.tensor([v + [eos] * (n - len(v))])

            def draw(seed):
                cond = torch.cat([text(ids("")).last_hidden_state, text(ids(prompt)).last_hidden_state])
                g = torch.Generator().manual_seed(seed)
                s = unet.config.sample_size
                x = torch.randn(1, unet.config.in_channels, s, s, generator=g) * sched.init_noise_sigma
                sched.set_timesteps(steps)
                for t in sched.timesteps:
                    out = unet(torch.cat([x, x]), t, encoder_hidden_states=cond).sample
                    u, c = out.chunk(2)
                    x = sched.step(u + guidance * (c - u), t, x).prev_sample
                return x
        else:
            pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
            pipe.set_progress_bar_config(disable=True)

            def draw(seed):
                g = torch.Generator().manual_seed(seed)
                return pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, generator=g,
                            output_type="pt").images
        draw(0)  # warm-up
        start = time.perf_counter()
        for k in range(images):
            draw(k + 1)
        per = (time.perf_counter() - start) / images
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tool": "diffusers", "seconds_per_image": per, "peak_rss_mb": rss_mb,
                      "steps": steps, "images": images, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
