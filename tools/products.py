"""The product memory as agent tools: register a product, label a defect, list, forget.

Every surface (LangChain, llama-index, MCP) wraps :class:`ProductTools`, built on the components of
the inspector the inspection tool runs, so the registry, the image policy (allowed roots), the
knowledge base and the expert are the same ones. A refusal is a :class:`ToolReply` with
``error=True`` and the typed error's one line; nothing is raised to the agent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from riad_agent.errors import RiadError, UnknownProductError
from riad_agent.imaging import load_image
from riad_agent.products.models import Product, defect_type_name, placement_advice, product_name
from riad_agent.tools.common import OnComponents, validation_error_text

#: At most this many images in one register_product call (as many as one ``--good`` folder).
MAX_PRODUCT_IMAGES = 200

#: An image as a chat model sends it: a file path (inside the allowed roots), base64 or a data URI.
ImageSource = Annotated[str, Field(min_length=1, description="File path, base64 string or data URI.")]

REGISTER = "register_product"
ADD_DEFECT = "add_defect_exemplar"
LIST = "list_products"
FORGET = "forget_product"


def _path_to_str(value: Any) -> Any:
    return str(value) if hasattr(value, "__fspath__") else value


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterProductArgs(_Args):
    """Arguments of ``register_product``."""

    name: str = Field(
        min_length=1, max_length=64, description="Product name, e.g. 'washer' or 'line3/bracket'."
    )
    images: list[ImageSource] = Field(
        min_length=1,
        max_length=MAX_PRODUCT_IMAGES,
        description="Normal (good) images of the product: file paths, base64 or data URIs.",
    )
    knowledge: str | None = Field(
        default=None, max_length=128, description="Knowledge category it links, e.g. 'mvtec/screw'."
    )
    pose: Literal["free", "fixed"] | None = Field(
        default=None, description="'free' (parts lie at any rotation) or 'fixed'; inferred when omitted."
    )

    @field_validator("images", mode="before")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        return [_path_to_str(item) for item in value] if isinstance(value, (list, tuple)) else value


class AddDefectArgs(_Args):
    """Arguments of ``add_defect_exemplar``."""

    name: str = Field(min_length=1, max_length=64, description="A registered product.")
    defect_type: str = Field(min_length=1, max_length=48, description="What the defect is, e.g. 'scratch'.")
    image: ImageSource = Field(description="An image of the defective part (path, base64 or data URI).")
    mask: ImageSource | None = Field(
        default=None,
        description="The defect's mask, white on black, the image's size; without it the expert finds the region.",
    )

    @field_validator("image", "mask", mode="before")
    @classmethod
    def _path(cls, value: Any) -> Any:
        return _path_to_str(value)


class ListProductsArgs(_Args):
    """``list_products`` takes no arguments."""


class ForgetProductArgs(_Args):
    """Arguments of ``forget_product``."""

    name: str = Field(min_length=1, max_length=64, description="A registered product.")
    defect_type: str | None = Field(
        default=None, max_length=48, description="Forget only this defect type's exemplars."
    )


@dataclass(frozen=True)
class ProductToolSpec:
    """One product tool: its name, what the model is told, its argument model."""

    name: str
    description: str
    args: type[_Args]


PRODUCT_TOOLS: tuple[ProductToolSpec, ...] = (
    ProductToolSpec(
        REGISTER,
        "Remember a product from normal (good) images of it, so later inspections can name it as the "
        "category and use these references, or recognise it from the image. Calling it again with the "
        "same name adds more references. Optionally link a knowledge category and the pose.",
        RegisterProductArgs,
    ),
    ProductToolSpec(
        ADD_DEFECT,
        "Store a labelled defect of a registered product (e.g. 'this one is a scratch'): the image, its "
        "region (from the mask, or found by the vision expert) and its embedding. Later inspections of "
        "the product name the defect type from these exemplars.",
        AddDefectArgs,
    ),
    ProductToolSpec(
        LIST,
        "List the registered products with their reference counts, pose, knowledge link and defect types.",
        ListProductsArgs,
    ),
    ProductToolSpec(
        FORGET,
        "Forget a registered product (its references, defects and images), or only one defect type's exemplars.",
        ForgetProductArgs,
    ),
)


@dataclass(frozen=True)
class ToolReply:
    """What a product tool tells the model; ``error`` marks a refusal (``text`` is the typed one line)."""

    text: str
    error: bool = False


def describe(product: Product) -> str:
    """One line a model reads about a product."""
    defects = ", ".join(f"{kind} ({n})" for kind, n in product.defect_counts().items()) or "none"
    return (
        f"{product.name}: {len(product.references)} references, pose {product.pose or 'inferred'}, "
        f"knowledge {product.knowledge or 'none'}, defect exemplars {defects}"
    )


class ProductTools(OnComponents):
    """The four product operations on one inspector's components."""

    def call(self, tool: str, arguments: dict[str, Any]) -> ToolReply:
        """Run ``tool`` with ``arguments``; every refusal comes back as a reply with ``error=True``."""
        spec = next((s for s in PRODUCT_TOOLS if s.name == tool), None)
        if spec is None:
            names = ", ".join(s.name for s in PRODUCT_TOOLS)
            return ToolReply(f"InvalidRequestError: no product tool {tool!r}; the tools: {names}", True)
        try:
            args = spec.args.model_validate(arguments)
            if isinstance(args, RegisterProductArgs):
                return ToolReply(self.register(args))
            if isinstance(args, AddDefectArgs):
                return ToolReply(self.add_defect(args))
            if isinstance(args, ForgetProductArgs):
                return ToolReply(self.forget(args))
            return ToolReply(self.list())
        except ValidationError as exc:
            return ToolReply(validation_error_text(exc), True)
        except RiadError as exc:
            return ToolReply(exc.one_line(), True)

    async def acall(self, tool: str, arguments: dict[str, Any]) -> ToolReply:
        """:meth:`call` on a worker thread (embedding and the store block)."""
        return await asyncio.to_thread(self.call, tool, arguments)

    # ------------------------------------------------------------ operations

    def register(self, args: RegisterProductArgs) -> str:
        """Add the product, or extend it when it is known (its link and pose must stay the same)."""
        name = product_name(args.name)
        registry = self.components.products.get()
        link = self.components.knowledge.get().resolve_category(args.knowledge) if args.knowledge else None
        try:
            existing: Product | None = registry.show(name)
        except UnknownProductError:
            existing = None
        if existing is not None:
            existing.check_same_settings(link, args.pose, "", f"forget it ({FORGET}) and register it again")
        images = [load_image(source, self.components.policy).image for source in args.images]
        if existing is None:
            product = registry.add(name, images, knowledge=link, pose=args.pose)
            advice = placement_advice(product.pose)
            return (
                f"registered {describe(product)}. Inspect with category {name!r} to use its references."
                + (f" Note: {advice}." if advice else "")
            )
        product = registry.extend(name, images)
        added = len(product.references) - len(existing.references)
        return (
            f"extended {name} with {added} new references (the rest were stored already): {describe(product)}"
        )

    def add_defect(self, args: AddDefectArgs) -> str:
        """Store a labelled defect exemplar (region from the mask, or the expert's strongest)."""
        from riad_agent.products.regions import mask_array

        name = product_name(args.name)
        defect_type = defect_type_name(args.defect_type)
        registry = self.components.products.get()
        registry.show(name)  # an unknown product fails before any image is read
        policy = self.components.policy
        picture = load_image(args.image, policy).image
        if args.mask is not None:
            mask = mask_array(load_image(args.mask, policy).image)
            exemplar = registry.add_defect(name, defect_type, picture, mask=mask)
        else:
            exemplar = registry.add_defect(name, defect_type, picture, expert=self.components.expert.get())
        x0, y0, x1, y1 = exemplar.box
        count = registry.show(name).defect_counts().get(defect_type, 0)
        source = "from the mask" if exemplar.region_source == "mask" else "found by the vision expert"
        return (
            f"stored a {defect_type} exemplar of {name}: region x {x0}-{x1}, y {y0}-{y1} of the "
            f"{exemplar.width}x{exemplar.height} stored image ({source}); "
            f"{name} now has {count} {defect_type} exemplar{'' if count == 1 else 's'}"
        )

    def list(self) -> str:
        """Every registered product, one line each."""
        products = self.components.products.get().list()
        if not products:
            return f"no products registered yet; register one with {REGISTER}"
        return "\n".join(describe(product) for product in products)

    def forget(self, args: ForgetProductArgs) -> str:
        """Remove a product, or only its exemplars of one defect type."""
        removed = self.components.products.get().remove(args.name, args.defect_type)
        name = product_name(args.name)
        if args.defect_type is None:
            return f"forgot {name} ({removed} stored points)"
        return f"forgot the {defect_type_name(args.defect_type)} exemplars of {name} ({removed})"
