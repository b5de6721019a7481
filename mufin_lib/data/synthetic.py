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

How also_buy is made (relation="complementary", the default since generator v3)
-------------------------------------------------------------------------------
Every pair has a true probability P[i, j] ("i is bought with j"); also_buy is one draw of it, so the data
are incomplete, and stage 01 can report what the best possible models reach (`oracle_table`). What real
co-purchase data has (../shared/data/hm/README.md), and v2 lacked:
- Directed complements between product types: each type buys 3 other types of its category (and, 3 times
  in 10, one of another category). "A buys B" rarely means "B buys A", so a label's buyers do not look like
  the label, and one score shared both ways (a Siamese embedding) cannot be right both ways: the per-label
  classifiers of Module IV have something to learn.
- Within the category, complements come in the point's style: the collection's products of a complement
  type (probability growing with their popularity), less often the same line in another colourway; across
  categories, a product of the complement type with the same colour and pattern (seen only in images).
- A head: per category, the 5% most popular products are hubs, each bought by 2-4 types of products
  (in-degrees from about 4 to 120 at 12,000 products, as H&M's), which nothing in their own content predicts.
- Alternatives: sometimes a popular product of the point's own type (about a sixth of the pairs).
- A product whose sampled list is empty is a label only (not a data point), as in the real curation.
relation="collections" is generator v2's relation (the collection's other members, noise, global
"bought with anything" products), kept for comparison.

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

GENERATOR_VERSION = 3  # v3: the complementary relation (products, titles and images are v2's, bit for bit)
RELATIONS = ("complementary", "collections")

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
    relation: str = "complementary"  # complementary (v3) | collections (v2's also_buy)

    @classmethod
    def for_size(cls, size: str | int, seed: int = 0, **kw) -> "SyntheticParams":
        n = SIZES[size] if isinstance(size, str) else int(size)
        return cls(n_products=n, seed=seed, **kw)


def _brand_names(rng, n):
    pairs = [f"{h} {t.capitalize()}" for h in BRAND_HEAD for t in BRAND_TAIL]
    names = [pairs[i] for i in rng.permutation(len(pairs))]
    # beyond the compounds (large catalogues), a number tells brands apart
    return [names[i % len(names)] + ("" if i < len(names) else f" {i // len(names) + 1}") for i in range(n)]


def _collections(rng, n: int, cats: list[str], cat_w: np.ndarray):
    """Brands (about one per 40 products), each in one category, and collections (a brand's line in 2-4
    colourways, each of several product types) made until n products exist, in a shuffled catalogue order.
    Returns (brand names, each brand's category, rows of (collection, brand, line, colour, pattern, type))."""
    n_brands = max(8, n // 40)
    brands = _brand_names(rng, n_brands)
    brand_cat = rng.choice(len(cats), size=n_brands, p=cat_w)
    rows = []
    coll = 0
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
            coll += 1
    rows = np.array(rows[:n], np.int64)
    return brands, brand_cat, rows[rng.permutation(n)]  # catalogue order must not reveal collections


def _collection_also_buy(rng, collection, brand, line, pop) -> sp.csr_matrix:
    """v2's also_buy ("collections"): a product's collection mates (more likely when popular), sometimes a product
    of the same line in another colourway, and now and then one of the catalogue's most popular products."""
    n = len(collection)
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
    return Y


def _titles_and_image_counts(rng, p: SyntheticParams, cats, category, ptype, brand, brands, line):
    """Titles (title-only signal: brand, line, material, details; some products have none) and image counts."""
    n = len(category)
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
    return titles, n_img


def generate_products(p: SyntheticParams) -> dict:
    """All attributes and the also_buy matrix, as arrays (no images yet)."""
    rng = np.random.default_rng([p.seed, 2])  # 2: products, titles and images unchanged since v2 (one stream, in order)
    cats = list(CATEGORIES)
    cat_w = np.array([CATEGORIES[c] for c in cats], float)
    cat_w /= cat_w.sum()
    n = p.n_products
    brands, brand_cat, rows = _collections(rng, n, cats, cat_w)
    collection, brand, line, colour, pattern, ptype = rows.T
    category = brand_cat[brand]
    pop = rng.pareto(1.2, size=n) + 1.0  # Zipf-like popularity: heavy head, long tail
    pop /= pop.mean()
    Y = _collection_also_buy(rng, collection, brand, line, pop)
    titles, n_img = _titles_and_image_counts(rng, p, cats, category, ptype, brand, brands, line)
    uids = [f"SYN{p.seed:02d}{i:07d}" for i in range(n)]
    prod = dict(uids=uids, titles=titles, category=category, category_names=cats, brand=brand,
                brand_names=brands, line=line, colour=colour, pattern=pattern, ptype=ptype,
                collection=collection, popularity=pop, n_images=n_img, Y=Y, P=None)
    if p.relation == "complementary":
        prod["P"], prod["complements"], prod["hubs"] = complementary_probabilities(prod, p.seed)
        draw = np.random.default_rng([p.seed, GENERATOR_VERSION, 7]).random(prod["P"].nnz)
        Y = prod["P"].copy()
        Y.data = (draw < Y.data).astype(np.float32)
        Y.eliminate_zeros()
        prod["Y"] = Y
    elif p.relation != "collections":
        raise ValueError(f"relation '{p.relation}': expected one of {', '.join(RELATIONS)}")
    return prod


def complementary_probabilities(prod: dict, seed: int):
    """P[i, j]: the probability that product i lists product j (see the module's docstring); zero diagonal.
    Returns P (csr, n x n), the directed type graph {type: [complement types]} (types as category * 8 + t)
    and the hubs {hub: (buyer types, probability)}."""
    rng = np.random.default_rng([seed, GENERATOR_VERSION])
    cat, ptype, pop = prod["category"], prod["ptype"], prod["popularity"]
    n, n_cat = len(cat), len(prod["category_names"])
    gtype = cat * 8 + ptype
    comp = {}
    for c in range(n_cat):
        for t in range(8):
            outs = [c * 8 + int(o) for o in rng.choice([o for o in range(8) if o != t], size=3, replace=False)]
            if rng.random() < 0.3:
                c2 = int(rng.choice([x for x in range(n_cat) if x != c]))
                outs.append(c2 * 8 + int(rng.integers(8)))
            comp[c * 8 + t] = outs

    def groups(*keys):
        g: dict[tuple, list[int]] = {}
        for i, k in enumerate(zip(*keys)):
            g.setdefault(k, []).append(i)
        return {k: np.array(v) for k, v in g.items()}
    by_coll_type = groups(prod["collection"], gtype)
    by_line_type = groups(prod["brand"], prod["line"], gtype)
    by_style_type = groups(gtype, prod["colour"], prod["pattern"])
    by_type = groups(gtype)
    q = np.clip(0.5 + 0.25 * np.log1p(pop), 0.1, 0.95)  # popular collection mates are bought more often
    # hubs: the most popular 5% of each category, each bought by 2-4 types at a rate giving in-degrees
    # log-uniform in [4, 120] at 12,000 products (growing as the square root of the catalogue)
    hubs = {}
    for c in range(n_cat):
        members = np.flatnonzero(cat == c)
        if len(members) == 0:
            continue
        for h in members[np.argsort(-pop[members])][: max(1, round(0.05 * len(members)))]:
            buyers = [c * 8 + int(t) for t in rng.choice([t for t in range(8) if t != ptype[h]],
                                                         size=int(rng.integers(2, 5)), replace=False)]
            n_buyers = sum(len(by_type.get((g,), [])) for g in buyers)
            degree = np.exp(rng.uniform(np.log(4), np.log(120))) * np.sqrt(n / 12_000)
            hubs[int(h)] = (buyers, float(min(0.5, degree / max(n_buyers, 1))))
    hubs_of_type: dict[int, list[tuple[int, float]]] = {}
    for h, (buyers, ph) in hubs.items():
        for g in buyers:
            hubs_of_type.setdefault(g, []).append((h, ph))
    rows, cols, vals = [], [], []

    def add(i, js, ps):
        keep = js != i
        rows.append(np.full(int(keep.sum()), i)); cols.append(js[keep]); vals.append(np.broadcast_to(ps, js.shape)[keep])
    for i in range(n):
        g = int(gtype[i])
        for g2 in comp[g]:
            if g2 // 8 == cat[i]:  # same category: the point's collection, or its line in another colourway
                js = by_coll_type.get((prod["collection"][i], g2))
                if js is not None:
                    add(i, js, q[js])
                js = by_line_type.get((prod["brand"][i], prod["line"][i], g2))
                if js is not None:
                    js = js[prod["collection"][js] != prod["collection"][i]]
                    add(i, js, 0.1 * q[js])
            else:  # another category: the same colour and pattern
                js = by_style_type.get((g2, prod["colour"][i], prod["pattern"][i]))
                if js is not None:
                    add(i, js, 0.6 * pop[js] / pop[js].sum())
        for h, ph in hubs_of_type.get(g, []):
            add(i, np.array([h]), np.array([ph]))
        js = by_type[(g,)]
        add(i, js, 0.4 * pop[js] / pop[js].sum())  # an alternative of the same type
    P = sp.csr_matrix((np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n, n))
    P.sum_duplicates()  # several reasons for one pair add up (at most 0.95)
    P.data = np.minimum(P.data, 0.95)
    return P, comp, hubs


def relation_facts(prod: dict, Y: sp.csr_matrix) -> dict:
    """The numbers ../shared/data/hm/README.md gives for H&M, on this catalogue."""
    Y = sp.coo_matrix(Y)
    indeg = np.asarray((sp.csr_matrix(Y) > 0).sum(0)).ravel()
    has = indeg[indeg > 0]
    gt = prod["category"] * 8 + prod["ptype"]
    reciprocal = sp.csr_matrix(Y).multiply(sp.csr_matrix(Y).T).nnz / max(Y.nnz, 1)
    return {"pairs_per_point": round(Y.nnz / max(int((np.bincount(Y.row, minlength=len(indeg)) > 0).sum()), 1), 2),
            "labels_with_incoming": int(len(has)), "incoming_median": float(np.median(has)),
            "incoming_p90": float(np.percentile(has, 90)), "incoming_max": int(has.max()),
            "labels_with_20_or_more": int((has >= 20).sum()),
            "pairs_within_type": round(float((gt[Y.row] == gt[Y.col]).mean()), 3),
            "pairs_within_collection": round(float((prod["collection"][Y.row] == prod["collection"][Y.col]).mean()), 3),
            "pairs_reciprocated": round(float(reciprocal), 3),
            "pairs_to_hubs": round(float(np.isin(Y.col, list(prod.get("hubs") or {})).mean()), 3)}


def oracle_table(P: sp.csr_matrix, Y_train: sp.csr_matrix, Y_test: sp.csr_matrix, test_rows: np.ndarray):
    """What the best possible models reach on the test points (every label known by the generator's truth):
    the true directed probabilities (a per-label model at its best), their symmetric part (P + P^T) / 2 (the
    best a score shared both ways, as a Siamese embedding, can learn from pairs in both directions), and train
    popularity. Their difference is the most a per-label component can add above a perfect shared embedding."""
    import pandas as pd

    from ..metrics import evaluate, inv_propensity

    inv_p = inv_propensity(Y_train)
    Pt = sp.csr_matrix(P[test_rows])
    S = sp.csr_matrix((P + P.T)[test_rows] / 2)
    freq = np.asarray((Y_train > 0).sum(0)).ravel()
    top = np.lexsort((np.arange(len(freq)), -freq))[:6]  # the same list for every point, minus the point itself
    pick = np.array([[l for l in top if l != i][:5] for i in test_rows])
    pop = sp.csr_matrix(((freq[pick] + 1.0).ravel().astype(np.float32),
                         (np.repeat(np.arange(len(test_rows)), 5), pick.ravel())), shape=(len(test_rows), P.shape[1]))
    rows = []
    for name, scores in (("per-label oracle: true directed probabilities", Pt),
                         ("shared oracle: symmetric part (P + P^T) / 2", S),
                         ("train popularity", pop)):
        m = evaluate(scores, Y_test, inv_p)
        rows.append({"scorer": name, **{k: m[k] for k in ("P@1", "P@3", "P@5", "PSP@5")}})
    df = pd.DataFrame(rows)
    head = df.iloc[0][["P@1", "P@5", "PSP@5"]] - df.iloc[1][["P@1", "P@5", "PSP@5"]]
    return df, {f"per_label_headroom_{k}": round(float(v), 2) for k, v in head.items()}


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
    rng = np.random.default_rng([seed, 2, i, k])  # 2: v2's images
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
    if prod["P"] is not None:
        table, headroom = oracle_table(prod["P"], ds.Y["train"], ds.Y["test"], test_pts)
        summary["oracle"] = {"table": table.to_dict("records"), **headroom}
        summary["relation_facts"] = relation_facts(prod, Y)
    with atomic_write(out_dir / "synthetic.json") as f:
        json.dump(summary, f, indent=2)
    return summary
