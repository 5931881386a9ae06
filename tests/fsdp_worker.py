"""Run by tests/test_training_distributed.py under torchrun, 2 CPU processes over gloo.

Each tiny model is sharded with torch's own `fully_shard` (FSDP2, what Accelerate uses on
GPUs), trained one SGD step, gathered and saved with dvoinik's checkpoint code. An unsharded
copy takes the same step on every process; the main process writes its weights beside the
folder, so the test can compare them.

    python -m torch.distributed.run --nproc_per_node 2 tests/fsdp_worker.py OUT
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from dvoinik.training.distributed import gathered_state_dict, save_model_folder


def tiny_models() -> dict:
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    llama = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=2)
    return {
        "llama-tied": lambda: LlamaForCausalLM(LlamaConfig(**llama, tie_word_embeddings=True)),
        "qwen2-untied": lambda: Qwen2ForCausalLM(Qwen2Config(**llama, tie_word_embeddings=False)),
        "gpt2": lambda: GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_positions=32,
                                                   resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # as the copy
                                                   bos_token_id=0, eos_token_id=0)),
        "llama-lora": lambda: get_peft_model(LlamaForCausalLM(LlamaConfig(**llama, tie_word_embeddings=True)),
                                             LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])),
    }


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if type(m).__name__.endswith(("DecoderLayer", "Block"))]


def sgd_step(model: torch.nn.Module, batch: torch.Tensor) -> None:
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(input_ids=batch, labels=batch).loss.backward()
    optimizer.step()


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    shards = {}
    for name, build in tiny_models().items():
        torch.manual_seed(0)
        model = build()
        reference = copy.deepcopy(model)
        for layer in decoder_layers(model):
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        embedding = model.get_input_embeddings().weight
        shards[name] = {"local": list(embedding.to_local().shape), "full": list(embedding.shape)}
        batch = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))  # the same on every rank
        sgd_step(model, batch)
        sgd_step(reference, batch)
        state_dict = gathered_state_dict(model)
        save_model_folder(model, state_dict, out / name, is_main_process=rank == 0)
        if rank == 0:
            torch.save({k: v.detach().clone() for k, v in reference.state_dict().items()}, out / f"{name}.reference.pt")
        dist.barrier()
    if rank == 0:
        (out / "shards.json").write_text(json.dumps(shards), encoding="utf-8")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
