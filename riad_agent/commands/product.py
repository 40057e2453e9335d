"""``riad product``: register products with normal references, label their defects, list, show, remove."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from riad_agent.commands.inspection import IMAGE_SUFFIXES
from riad_agent.commands.terminal import stdout, typed_errors
from riad_agent.errors import InvalidRequestError, PathNotAllowedError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from PIL import Image

    from riad_agent.imaging import ImagePolicy
    from riad_agent.products.models import Product
    from riad_agent.products.registry import ProductRegistry
    from riad_agent.settings import Settings

app = typer.Typer(
    help="Products the inspector remembers: references and labelled defects.", no_args_is_help=True
)

#: At most this many images are read from the --good folders and files of one call.
MAX_GOOD_IMAGES = 200


def _confined(path: Path, policy: ImagePolicy, what: str) -> Path:
    """``path`` resolved, or :class:`PathNotAllowedError` when it lies outside the allowed roots."""
    resolved = path.expanduser().resolve(strict=False)
    roots = policy.allowed_roots
    if roots is not None and not any(
        resolved.is_relative_to(Path(root).expanduser().resolve(strict=False)) for root in roots
    ):
        allowed = ", ".join(str(r) for r in roots) or "(none)"
        raise PathNotAllowedError(f"{what} {path} is outside the allowed roots: {allowed}")
    return resolved


def good_images(
    sources: Sequence[Path], policy: ImagePolicy, limit: int = MAX_GOOD_IMAGES
) -> list[Image.Image]:
    """The images of ``sources`` (folders, their images sorted by name, or image files; each image
    once, at most ``limit`` in all), each read under ``policy``."""
    from riad_agent.imaging import load_image

    found: list[Path] = []
    for source in sources:
        resolved = _confined(source, policy, "--good folder" if source.is_dir() else "--good image")
        if resolved.is_dir():
            images = sorted(
                p for p in resolved.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
            if not images:
                raise InvalidRequestError(
                    f"--good {source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            found += images
        elif resolved.is_file() and resolved.suffix.lower() in IMAGE_SUFFIXES:
            found.append(resolved)
        else:
            raise InvalidRequestError(f"--good {source} is not a folder of normal images nor an image file")
    found = list(dict.fromkeys(found))
    if len(found) > limit:
        raise InvalidRequestError(f"--good gives {len(found)} images; give at most {limit}")
    return [load_image(str(path), policy).image for path in found]


def _context() -> tuple[Settings, ImagePolicy, ProductRegistry]:
    from riad_agent.imaging import ImagePolicy
    from riad_agent.products.factory import open_registry
    from riad_agent.settings import load_settings

    settings = load_settings()
    return settings, ImagePolicy.from_settings(settings), open_registry(settings)


def _knowledge_category(settings: Settings, name: str) -> str:
    """The canonical knowledge category ``name`` (a typo is an :class:`UnknownCategoryError`)."""
    from riad_agent.knowledge.factory import open_knowledge_base

    kb = open_knowledge_base(settings)
    try:
        return kb.resolve_category(name)
    finally:
        kb.close()


def _summary(product: Product) -> dict[str, Any]:
    return {
        "name": product.name,
        "knowledge": product.knowledge,
        "pose": product.pose,
        "references": len(product.references),
        "defects": product.defect_counts(),
    }


def _print_product(product: Product, bank_pose: str | None = None) -> None:
    from riad_agent.products.models import placement_advice

    table = Table(show_header=False, box=None)
    table.add_row("product", product.name)
    table.add_row("knowledge", product.knowledge or "-")
    table.add_row("pose", product.pose or bank_pose or "inferred from the references")
    table.add_row("references", str(len(product.references)))
    advice = placement_advice(product.pose or bank_pose)
    if advice:
        table.add_row("note", advice)
    for kind, count in product.defect_counts().items():
        table.add_row("defect", f"{kind} ({count})")
    stdout.print(table)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Product name, e.g. washer or line3/bracket.")],
    good: Annotated[
        list[Path],
        typer.Option(
            "--good", help="A folder of normal (good) images of the product, or one such image; repeatable."
        ),
    ],
    knowledge: Annotated[
        str | None, typer.Option(help="Knowledge category it links, e.g. mvtec/screw.")
    ] = None,
    pose: Annotated[
        str | None, typer.Option(help="free (any rotation) or fixed; inferred when omitted.")
    ] = None,
    cache_bank: Annotated[
        bool, typer.Option("--cache-bank/--no-cache-bank", help="Build the expert's bank now.")
    ] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the product as JSON.")] = False,
) -> None:
    """Register a product from its normal images; run again with more images to extend it."""
    with typed_errors():
        if pose not in (None, "free", "fixed"):
            raise InvalidRequestError(f"--pose must be free or fixed (got {pose!r})")
        settings, policy, registry = _context()
        images = good_images(good, policy)
        known = {p.name for p in registry.list()}
        from riad_agent.products.models import product_name

        canonical = product_name(name)
        if canonical in known:
            existing = registry.show(canonical)
            # compare the resolved link ('screw' is 'mvtec/screw'), as the tools do
            existing.check_same_settings(
                _knowledge_category(settings, knowledge) if knowledge else None,
                pose,
                "--",
                f"remove it (riad product remove {canonical}) and add it again",
            )
            product = registry.extend(canonical, images)
        else:
            link = _knowledge_category(settings, knowledge) if knowledge else None
            product = registry.add(canonical, images, knowledge=link, pose=pose)  # type: ignore[arg-type]
        bank_pose = None
        if cache_bank:
            from riad_agent.expert import open_expert

            bank = open_expert(settings).fit(registry.reference_images(canonical), pose=product.pose)
            bank_pose = bank.meta.get("pose")
        if json_out:
            print(product.model_dump_json(indent=2))
        else:
            _print_product(product, bank_pose)


@app.command("add-defect")
def add_defect(
    name: Annotated[str, typer.Argument(help="A registered product.")],
    image: Annotated[Path, typer.Argument(help="An image of the defective part.")],
    defect_type: Annotated[str, typer.Option("--type", help="What the defect is, e.g. scratch.")],
    mask: Annotated[
        Path | None, typer.Option(help="The defect's mask (white on black, the image's size).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the exemplar as JSON.")] = False,
) -> None:
    """Store a labelled defect: its image, region (the mask's box, or the expert's strongest) and embedding."""
    with typed_errors():
        from riad_agent.imaging import load_image
        from riad_agent.products.regions import mask_array

        settings, policy, registry = _context()
        registry.show(name)  # an unknown product fails before anything heavy
        picture = load_image(str(image), policy).image
        if mask is not None:
            exemplar = registry.add_defect(
                name, defect_type, picture, mask=mask_array(load_image(str(mask), policy).image)
            )
        else:
            from riad_agent.expert import open_expert

            exemplar = registry.add_defect(name, defect_type, picture, expert=open_expert(settings))
        if json_out:
            print(exemplar.model_dump_json(indent=2))
        else:
            x0, y0, x1, y1 = exemplar.box
            stdout.print(
                f"{exemplar.defect_type} on {name}: region x {x0}-{x1}, y {y0}-{y1} "
                f"(from the {exemplar.region_source})",
                markup=False,
            )


@app.command("list")
def list_products(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every registered product with its counts of references and defect exemplars."""
    with typed_errors():
        _, _, registry = _context()
        products = registry.list()
        if json_out:
            print(json.dumps([_summary(p) for p in products], indent=2))
            return
        table = Table("product", "knowledge", "pose", "references", "defects")
        for product in products:
            defects = ", ".join(f"{k} ({n})" for k, n in product.defect_counts().items())
            table.add_row(
                product.name,
                product.knowledge or "-",
                product.pose or "inferred",
                str(len(product.references)),
                defects,
            )
        stdout.print(table)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="A registered product.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One product: its link, pose, references and defect exemplars."""
    with typed_errors():
        _, _, registry = _context()
        product = registry.show(name)
        if json_out:
            print(product.model_dump_json(indent=2))
        else:
            _print_product(product)


@app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="A registered product.")],
    defect_type: Annotated[
        str | None, typer.Option("--type", help="Remove only the exemplars of this defect type.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Remove a product (its references, exemplars and images), or only one defect type's exemplars."""
    with typed_errors():
        _, _, registry = _context()
        removed = registry.remove(name, defect_type)
        if json_out:
            print(json.dumps({"product": name, "defect_type": defect_type, "removed_points": removed}))
        else:
            what = f"the {defect_type} exemplars of {name}" if defect_type else name
            stdout.print(f"removed {what} ({removed} points)", markup=False)


@app.command("reembed")
def reembed(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Embed every registered product again from its stored images (after an upgrade or a new backbone)."""
    with typed_errors():
        from riad_agent.expert import open_expert

        settings, _, registry = _context()
        counts = registry.reembed(open_expert=lambda: open_expert(settings))  # built only if needed
        if json_out:
            print(json.dumps({**counts, "embedder": registry.embedder.embedder_id}))
        else:
            stdout.print(
                f"re-embedded {counts['products']} product(s): {counts['references']} reference(s), "
                f"{counts['defects']} defect exemplar(s), with {registry.embedder.embedder_id}",
                markup=False,
            )
