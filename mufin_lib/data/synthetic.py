"""A deterministic synthetic multimodal catalogue, written in the released XC layout (the kit's embedded
default data). Every result computed on it is SYNTHETIC and is labelled so.

How products are made
---------------------
- 20 categories: the rows of the paper's Table 6, weighted by the label counts printed there.
- Each category has product types (kettle, toaster, ...). Brands (made-up words) sell in one category.
- A *collection* is (brand, line, colourway): a brand's line (e.g. "Veltor Aurora") comes in 2-4
  colourways, and each colourway is a (colour, pattern) pair, e.g. teal + stripes.
  A collection holds 2-10 products of DIFFERENT types: a kettle, a toaster and a mug rack in one style.
- Titles say brand, line, type and title-only details (material, size, pack): never colour or pattern.
- Images (0-15 per product; about 10% have none) show the line's design (a shape: 24 line names share
  8 shapes, and every brand uses the same line names) filled with the colourway's colour and pattern, in
  several views (scale, position, rotation, a detail crop), with a little noise and a few misleading
  "lifestyle" shots. Images never show the brand, and the product type only in words.
- About 2% of products have no title (they have at least one image).

How also_buy is made (complementary, noisy, incomplete)
-------------------------------------------------------
- Product i "buys with" the other members of its collection (complements: other types, same style),
  each kept with a probability that grows with the member's popularity (Zipf-like weights: head and tail),
  so the data are incomplete.
- Noise: with some probability a product also lists a member of the same line in another colourway
  (half right), and globally popular products (a Zipf head, the "batteries" of the catalogue).
- A product whose sampled list is empty is a label only (not a data point), as in the real curation.

Which signal each modality carries
----------------------------------
The right labels for a point are its collection: same brand + line (title) AND same colourway (image
only). Title alone cannot tell the colourways of a line apart; image alone cannot tell the brands that
use the same design and colourway apart; so text-only and image-only retrieval both lose to text+image.
Type words in titles point to near-duplicates (same type, other brands), which are NOT what is bought
together: a model has to learn complementarity, as on the real data.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from PIL import Image, ImageDraw
from ..progress import tqdm

from ..paths import atomic_write
from .curate import split_dataset
from .images import encode_b64
from .xc import write_xc

GENERATOR_VERSION = 2

# Table 6 categories and their label counts (the weights of the category mix).
CATEGORIES = {
    "AMAZON FASHION": 681, "All Beauty": 329, "Appliances": 767, "Arts Crafts and Sewing": 16843,
    "Automotive": 18384, "Cell Phones and Accessories": 6410, "Clothing Shoes and Jewelry": 25379,
    "Electronics": 22449, "Grocery and Gourmet Food": 24676, "Home and Kitchen": 37111,
    "Industrial and Scientific": 7333, "Luxury Beauty": 3455, "Musical Instruments": 3835,
    "Office Products": 16763, "Patio Lawn and Garden": 11631, "Pet Supplies": 12102, "Prime Pantry": 3328,
    "Sports and Outdoors": 24842, "Tools and Home Improvement": 23437, "Toys and Games": 43541,
}
TYPES = {
    "AMAZON FASHION": "scarf tote belt wallet sunglasses beanie gloves clutch",
    "All Beauty": "brush comb mirror sponge pouch nail-file hair-clip compact",
    "Appliances": "kettle toaster blender mixer coffee-maker juicer scale timer",
    "Arts Crafts and Sewing": "sketchbook brush-set easel palette yarn scissors pin-cushion canvas",
    "Automotive": "seat-cover floor-mat steering-wrap phone-mount organizer sunshade key-case air-freshener",
    "Cell Phones and Accessories": "phone-case charger cable stand screen-protector earbuds power-bank wallet-case",
    "Clothing Shoes and Jewelry": "sneakers t-shirt hoodie socks cap backpack bracelet watch",
    "Electronics": "speaker headphones keyboard mouse webcam hub lamp remote",
    "Grocery and Gourmet Food": "tea-tin coffee-jar spice-box honey-jar cookie-tin snack-box mug canister",
    "Home and Kitchen": "plate bowl mug vase cushion towel lamp-shade tray",
    "Industrial and Scientific": "beaker tray label-maker bin glove-box clipboard storage-case rack",
    "Luxury Beauty": "perfume lotion serum candle soap-dish cream-jar diffuser vanity-case",
    "Musical Instruments": "guitar-strap picks capo tuner stand cable gig-bag drum-pad",
    "Office Products": "notebook pen-cup stapler desk-tray folder planner tape-dispenser organizer",
    "Patio Lawn and Garden": "planter watering-can gloves hose-reel bird-feeder lantern cushion trowel",
    "Pet Supplies": "pet-bowl leash collar pet-bed toy-ball carrier feeder grooming-brush",
    "Prime Pantry": "cereal-box pasta-jar sauce-bottle snack-bag soup-can cracker-box oil-bottle rice-bag",
    "Sports and Outdoors": "water-bottle yoga-mat gym-bag headband towel jump-rope dumbbell cap",
    "Tools and Home Improvement": "drill tool-box tape-measure level flashlight screwdriver-set work-gloves hammer",
    "Toys and Games": "puzzle plush blocks board-game ball kite car-toy doll",
}
LINES = ("Aurora Summit Classic Nova Prime Terra Luna Vista Echo Zen Atlas Harbor Metro Pulse Quill Rivet "
         "Sable Tundra Vector Willow Orbit Pioneer Coral Ember").split()
COLOURS = {  # image-only attribute
    "red": (200, 40, 40), "orange": (235, 130, 30), "yellow": (230, 200, 40), "green": (50, 150, 60),
    "teal": (30, 150, 150), "blue": (40, 80, 200), "navy": (25, 35, 100), "purple": (120, 50, 160),
    "pink": (230, 120, 170), "brown": (120, 75, 40), "grey": (128, 128, 128), "black": (25, 25, 25),
}
PATTERNS = ("solid", "stripes", "dots", "checks", "diagonal", "rings")  # image-only attribute
SHAPES = ("circle", "square", "triangle", "hexagon", "ellipse", "diamond", "star", "capsule")
MATERIALS = "stainless bamboo ceramic cotton glass recycled leather silicone aluminium wooden".split()
DETAILS = ("2-pack", "set of 3", "large", "compact", "12 inch", "8 oz", "deluxe", "travel size", "with lid",
           "premium", "mini", "XL")
# Brands are compounds of everyday words (no colour words: colour is for images only).
BRAND_HEAD = ("North Oak Maple Cedar Pine River Stone Iron Sun Star Wild Swift Bright Harbor Moss Fox Bear Hawk "
              "Wolf Eagle Falcon Otter Willow Birch Elm Ash Hill Lake Bay Cliff Rock Sand Frost Storm Rain Cloud "
              "Ridge Valley Meadow Prairie Canyon Summit Coast Island Forest Field Garden Orchard").split()
BRAND_TAIL = "wood field craft works haven brook point crest gate well land mark stead ford ton vale side co".split()

SIZES = {"smoke": 2_000, "default": 20_000}


@dataclass
class SyntheticParams:
    n_products: int = 2_000
    seed: int = 0
    with_images: bool = True
    max_images: int = 15
    image_size: int = 128
    test_fraction: float = 0.3
    p_no_image: float = 0.10
    p_no_title: float = 0.02
    jpeg_quality: int = 80

    @classmethod
    def for_size(cls, size: str | int, seed: int = 0, **kw) -> "SyntheticParams":
        n = SIZES[size] if isinstance(size, str) else int(size)
        return cls(n_products=n, seed=seed, **kw)


def _brand_names(rng, n):
    pairs = [f"{h} {t.capitalize()}" for h in BRAND_HEAD for t in BRAND_TAIL]
    names = [pairs[i] for i in rng.permutation(len(pairs))]
    # beyond the compounds (large catalogues), a number tells brands apart
    return [names[i % len(names)] + ("" if i < len(names) else f" {i // len(names) + 1}") for i in range(n)]


def generate_products(p: SyntheticParams) -> dict:
    """All attributes and the also_buy matrix, as arrays (no images yet)."""
    rng = np.random.default_rng([p.seed, GENERATOR_VERSION])
    cats = list(CATEGORIES)
    cat_w = np.array([CATEGORIES[c] for c in cats], float)
    cat_w /= cat_w.sum()
    n = p.n_products
    # Collections are made until n products exist. Brands: about one per 40 products.
    n_brands = max(8, n // 40)
    brands = _brand_names(rng, n_brands)
    brand_cat = rng.choice(len(cats), size=n_brands, p=cat_w)
    rows = []  # (collection id, brand, line, colour, pattern, type)
    coll = 0
    line_of = []  # per collection: (brand, line)
    while len(rows) < n:
        b = int(rng.integers(n_brands))
        line = int(rng.integers(len(LINES)))
        n_ways = int(rng.integers(2, 5))
        styles = rng.choice(len(COLOURS) * len(PATTERNS), size=n_ways, replace=False)
        types = TYPES[cats[brand_cat[b]]].split()
        for s in styles:
            k = int(min(len(types), 2 + rng.geometric(0.3)))
            for t in rng.choice(len(types), size=k, replace=False):
                rows.append((coll, b, line, s // len(PATTERNS), s % len(PATTERNS), int(t)))
            line_of.append((b, line))
            coll += 1
    rows = np.array(rows[:n], np.int64)
    order = rng.permutation(n)  # catalogue order must not reveal collections
    rows = rows[order]
    collection, brand, line, colour, pattern, ptype = rows.T
    category = brand_cat[brand]
    # Zipf-like popularity: heavy head, long tail.
    pop = rng.pareto(1.2, size=n) + 1.0
    pop /= pop.mean()

    members: dict[int, list[int]] = {}
    for i, c in enumerate(collection):
        members.setdefault(int(c), []).append(i)
    by_line: dict[tuple, list[int]] = {}
    for i in range(n):
        by_line.setdefault((int(brand[i]), int(line[i])), []).append(i)
    head = np.argsort(-pop)[: max(5, n // 200)]  # the catalogue's "batteries"
    head_p = pop[head] / pop[head].sum()
    ri, ci = [], []
    for i in range(n):
        mates = [j for j in members[int(collection[i])] if j != i]
        keep_p = np.clip(0.35 + 0.25 * np.log1p(pop[mates]), 0.1, 0.95) if mates else []
        for j, kp in zip(mates, keep_p):
            if rng.random() < kp:
                ri.append(i); ci.append(j)
        if rng.random() < 0.25:  # same line, other colourway: half right
            cand = [j for j in by_line[(int(brand[i]), int(line[i]))] if collection[j] != collection[i]]
            if cand:
                ri.append(i); ci.append(int(cand[rng.integers(len(cand))]))
        for _ in range(rng.poisson(0.4)):  # popular products bought with anything
            j = int(head[rng.choice(len(head), p=head_p)])
            if j != i:
                ri.append(i); ci.append(j)
    Y = sp.csr_matrix((np.ones(len(ri), np.float32), (ri, ci)), shape=(n, n))
    Y.data[:] = 1.0
    Y.sum_duplicates(); Y.data[:] = 1.0

    # Titles (title-only: brand, line, material, details) and image counts.
    has_title = rng.random(n) >= p.p_no_title
    n_img = np.where(rng.random(n) < p.p_no_image, 0, np.minimum(p.max_images, rng.geometric(0.45, size=n)))
    n_img = np.where(~has_title & (n_img == 0), 1, n_img) if p.with_images else np.zeros(n, int)
    if not p.with_images:
        has_title[:] = True
    titles = []
    for i in range(n):
        if not has_title[i]:
            titles.append("")
            continue
        t = TYPES[cats[category[i]]].split()[ptype[i]].replace("-", " ")
        words = [brands[brand[i]], LINES[line[i]], t]
        if rng.random() < 0.7:
            words.insert(2, MATERIALS[rng.integers(len(MATERIALS))])
        if rng.random() < 0.6:
            words.append("- " + DETAILS[rng.integers(len(DETAILS))])
        titles.append(" ".join(words))
    uids = [f"SYN{p.seed:02d}{i:07d}" for i in range(n)]
    return dict(uids=uids, titles=titles, category=category, category_names=cats, brand=brand,
                brand_names=brands, line=line, colour=colour, pattern=pattern, ptype=ptype,
                collection=collection, popularity=pop, n_images=n_img, Y=Y)


# ---- images -----------------------------------------------------------------------------------------

def _pattern_layer(colour: tuple, pattern: str, size: int, rng) -> Image.Image:
    base = tuple(int(np.clip(c + rng.integers(-12, 13), 0, 255)) for c in colour)
    accent = tuple(int(c * 0.55 + 255 * 0.45) for c in base)  # lighter shade of the same colour
    img = Image.new("RGB", (size, size), base)
    d = ImageDraw.Draw(img)
    step = int(rng.integers(10, 16))
    if pattern == "stripes":
        for x in range(0, size, step):
            d.rectangle([x, 0, x + step // 2 - 1, size], fill=accent)
    elif pattern == "dots":
        for y in range(step // 2, size, step):
            for x in range(step // 2, size, step):
                d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=accent)
    elif pattern == "checks":
        for y in range(0, size, step):
            for x in range(0, size, step):
                if (x // step + y // step) % 2 == 0:
                    d.rectangle([x, y, x + step - 1, y + step - 1], fill=accent)
    elif pattern == "diagonal":
        for k in range(-size, size, step):
            d.line([(k, 0), (k + size, size)], fill=accent, width=max(2, step // 3))
    elif pattern == "rings":
        for r in range(step, size, step):
            d.ellipse([size / 2 - r, size / 2 - r, size / 2 + r, size / 2 + r], outline=accent, width=3)
    return img


def _shape_mask(shape: str, size: int, scale: float, dx: float, dy: float, rot: float) -> Image.Image:
    m = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(m)
    cx, cy, r = size / 2 + dx, size / 2 + dy, size * 0.4 * scale

    def poly(k, start=0.0, radii=None):
        pts = []
        for i in range(k):
            a = start + rot + 2 * math.pi * i / k
            rr = r * (radii[i % len(radii)] if radii else 1.0)
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "square":
        d.polygon(poly(4, math.pi / 4), fill=255)
    elif shape == "triangle":
        d.polygon(poly(3, -math.pi / 2), fill=255)
    elif shape == "hexagon":
        d.polygon(poly(6), fill=255)
    elif shape == "ellipse":
        d.ellipse([cx - r, cy - r * 0.55, cx + r, cy + r * 0.55], fill=255)
    elif shape == "diamond":
        d.polygon(poly(4, 0, [1.0, 0.6]), fill=255)
    elif shape == "star":
        d.polygon(poly(10, -math.pi / 2, [1.0, 0.45]), fill=255)
    else:  # capsule
        d.rounded_rectangle([cx - r, cy - r * 0.45, cx + r, cy + r * 0.45], radius=int(r * 0.45), fill=255)
    return m


def render_image(prod: dict, i: int, k: int, seed: int, size: int = 128) -> Image.Image:
    """Image k of product i: deterministic in (seed, i, k), independent of any other image."""
    rng = np.random.default_rng([seed, GENERATOR_VERSION, i, k])
    colour = list(COLOURS.values())[prod["colour"][i]]
    pattern = PATTERNS[prod["pattern"][i]]
    if k > 0 and rng.random() < 0.06:  # a "lifestyle" shot: misleading colours
        colour = list(COLOURS.values())[rng.integers(len(COLOURS))]
        pattern = PATTERNS[rng.integers(len(PATTERNS))]
    layer = _pattern_layer(colour, pattern, size, rng)
    if k > 0 and rng.random() < 0.25:  # detail view: the texture fills the frame
        return layer
    shape = SHAPES[prod["line"][i] % len(SHAPES)]  # the line's design, shared by the collection
    scale = 1.0 if k == 0 else float(rng.uniform(0.6, 1.1))
    dx, dy = (0.0, 0.0) if k == 0 else rng.uniform(-size * 0.12, size * 0.12, 2)
    rot = 0.0 if k == 0 else float(rng.uniform(-0.5, 0.5))
    bg = (255, 255, 255) if k == 0 else tuple(int(v) for v in rng.integers(225, 256, 3))
    canvas = Image.new("RGB", (size, size), bg)
    canvas.paste(layer, (0, 0), _shape_mask(shape, size, scale, float(dx), float(dy), rot))
    return canvas


def generate(out_dir: str | Path, params: SyntheticParams) -> dict:
    """Write the catalogue in the XC layout (plus attributes.tsv and label_categories.txt) under out_dir.
    Returns the generation summary, also written to synthetic.json."""
    out_dir = Path(out_dir)
    prod = generate_products(params)
    Y = prod["Y"]
    n = params.n_products
    rng = np.random.default_rng([params.seed, GENERATOR_VERSION, 99])
    points = np.flatnonzero(Y.getnnz(1) > 0)
    perm = rng.permutation(points)
    n_test = int(round(len(points) * params.test_fraction))
    test_pts, train_pts = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    ds = split_dataset(prod["uids"], prod["titles"], [[] for _ in range(n)], Y, train_pts, test_pts, out_dir)
    write_xc(ds, out_dir)
    cats = prod["category_names"]
    with atomic_write(out_dir / "label_categories.txt") as f:
        f.writelines(f"{cats[c]}\n" for c in prod["category"])
    with atomic_write(out_dir / "attributes.tsv") as f:  # the generator's truth, for analysis only
        f.write("uid\tcategory\tbrand\tline\tcolour\tpattern\ttype\tcollection\tn_images\n")
        for i in range(n):
            f.write("\t".join([prod["uids"][i], cats[prod["category"][i]], prod["brand_names"][prod["brand"][i]],
                               LINES[prod["line"][i]], list(COLOURS)[prod["colour"][i]], PATTERNS[prod["pattern"][i]],
                               TYPES[cats[prod["category"][i]]].split()[prod["ptype"][i]],
                               str(prod["collection"][i]), str(prod["n_images"][i])]) + "\n")
    n_images = 0
    if params.with_images:
        b64 = {}
        for i in tqdm(range(n), desc="render images", unit=" product", mininterval=2):
            b64[i] = [encode_b64(render_image(prod, i, k, params.seed, params.image_size), params.jpeg_quality)
                      for k in range(int(prod["n_images"][i]))]
            n_images += len(b64[i])
        for split, rows in (("train", train_pts), ("test", test_pts), ("label", np.arange(n))):
            with atomic_write(out_dir / "images" / f"{split}.img.bin") as f:
                for i in rows:
                    for s in b64[int(i)]:
                        f.write(f"{prod['uids'][i]}\t{s}\n")
    summary = {"generator_version": GENERATOR_VERSION, "params": asdict(params), "synthetic": True,
               "n_products": n, "n_train": len(train_pts), "n_test": len(test_pts), "n_images": n_images,
               "n_collections": int(prod["collection"].max() + 1), "pairs": int(Y.nnz)}
    with atomic_write(out_dir / "synthetic.json") as f:
        json.dump(summary, f, indent=2)
    return summary
