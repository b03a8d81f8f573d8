"""`landslide-dvc stack`: the scene a classifier bundle expects, built from the products a user downloads.

A Zindi-layout scene has 12 bands (`core.bands.RAW_BANDS`): Sentinel-2 Red, Green, Blue, NIR as
reflectance x 10,000 without any offset, and Sentinel-1 VV, VH and their post-minus-pre change in
dB, from a descending and an ascending orbit. No product looks like that. `stack` reads what each
input is from its own metadata, splits the acquisitions at the event date, and builds that scene:

1. **Inputs.** A STAC Item JSON (Earth Search names assets by common name: `red`, `nir`, `vv`;
   Planetary Computer by band ID: `B04`, `B08`; both are read, and `eo:bands` common names too) or
   a Sentinel-2 SAFE folder (`MTD_MSIL2A.xml`/`MTD_MSIL1C.xml` and its `IMG_DATA` band files).
   The sensor comes from `platform`/`constellation` (or the SAFE name), the date from `datetime`,
   the orbit from `sat:orbit_state`.
2. **Sentinel-2 harmonised.** Digital numbers of processing baseline 04.00 and later carry an
   offset (reflectance = (DN + offset) / 10,000, offset -1000). It is removed from whichever
   record states it: the band file's own GDAL scale/offset, the Item's `raster:bands`, the SAFE's
   `BOA_ADD_OFFSET` (`RADIO_ADD_OFFSET` for L1C), or `s2:processing_baseline`. A product from
   2022-01-25 on that states none is refused, since guessing would shift every optical band by
   1,000. The optical bands come from the post-event acquisitions (their median where several are
   given); clouds are kept unless `--mask-scl` names SCL classes to blank out.
3. **Sentinel-1 in dB.** Backscatter in linear power (RTC gamma0 as catalogues serve it) is
   converted to dB (10 log10); a unit stated as dB is kept (`raster:bands` unit, or `--sar-units`).
   Per orbit direction, the post- and pre-event acquisitions are each composited by their median
   in dB, and Diff = post - pre, the sign of the Zindi data description. The median, because
   speckle and single-date wet-soil or flooding changes are outliers that a mean would spread.
4. **One grid.** By default the post-event Sentinel-2 product's 10 m grid; `--crs`,
   `--resolution` and `--bounds` set another. Bands are resampled bilinearly, the SCL mask by
   nearest neighbour; a pixel is no-data (NaN) where any input does not cover it.
5. **Outputs.** The scene as a Cloud Optimized GeoTIFF (float32, NaN no-data, bands Red ... ADVH), which
   `landslide-dvc predict` takes unchanged; beside it a provenance JSON (each input with its
   sha256, product ID, date and role, the offsets removed, the units converted and the grid) and
   the scene's STAC Item (pystac: footprint, dates, proj, raster and file extensions with the
   checksum, links to the Items it was derived from).

The Landslide4Sense bundle takes the release's rescaled bands, whose constants from digital
numbers the release does not publish, so `stack` cannot build its scenes and says so.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from landslide_dvc.core.bands import RAW_BANDS
from landslide_dvc.core.errors import DataError, ParamError
from landslide_dvc.core.io import atomic_paths, ensure_output_folder, file_sha256

BASELINE_OFFSET_FROM = dt.date(2022, 1, 25)  # processing baseline 04.00: DN carry BOA_ADD_OFFSET -1000
QUANTIFICATION = 10000.0  # reflectance x 10,000: the Zindi optical scale
OPTICAL = ("red", "green", "blue", "nir")  # the order of RAW_BANDS[:4]
# How catalogues and SAFE files name the four optical bands and the SCL layer.
S2_ASSET_NAMES = {
    "red": ("red", "B04", "b04"), "green": ("green", "B03", "b03"), "blue": ("blue", "B02", "b02"),
    "nir": ("nir", "B08", "b08", "nir08"), "scl": ("scl", "SCL"),
}
S2_BAND_IDS = {"red": "B04", "green": "B03", "blue": "B02", "nir": "B08"}
SAR_POLARISATIONS = ("vv", "vh")
ORBITS = ("descending", "ascending")  # the order of RAW_BANDS[4:8] and [8:12]
SCL_CLASSES = {
    0: "no data", 1: "saturated or defective", 2: "dark area", 3: "cloud shadow", 4: "vegetation", 5: "not vegetated",
    6: "water", 7: "unclassified", 8: "cloud medium probability", 9: "cloud high probability", 10: "thin cirrus",
    11: "snow or ice",
}


# ----------------------------------------------------------------------------------------------
# What the inputs are


@dataclass
class Asset:
    """One band file of an acquisition, and how its numbers become the scene's."""

    path: Path
    offset: float = 0.0  # added to the file's values (after its own GDAL scale/offset), in the scene's units
    scale: float = 1.0  # multiplied first
    note: str = ""  # what was removed or converted, for the provenance
    offset_unstated: bool = False  # a 2022+ Sentinel-2 band whose Item states no offset: the file itself must
    nodata: float | None = None  # the product's no-data value where its metadata (not the file) states it


@dataclass
class Acquisition:
    """One product: which sensor, when, from which orbit, and its band files."""

    source: Path  # the Item JSON or SAFE folder given
    product_id: str
    sensor: str  # "sentinel-2" or "sentinel-1"
    date: dt.date
    orbit: str | None  # Sentinel-1: descending or ascending
    assets: dict[str, Asset] = field(default_factory=dict)  # red, green, blue, nir, scl / vv, vh
    sar_db: bool = False  # Sentinel-1 values already in dB
    role: str = ""  # pre or post, set against the event date


def _sensor(text: str) -> str | None:
    text = text.lower().replace("_", "-")
    if text.startswith(("sentinel-2", "s2")):
        return "sentinel-2"
    if text.startswith(("sentinel-1", "s1")):
        return "sentinel-1"
    return None


def _href(item_path: Path, asset: dict[str, Any], name: str) -> Path:
    href = str(asset.get("href", ""))
    if re.match(r"^[a-z][a-z0-9+.-]*://", href) and not href.startswith("file://"):
        raise DataError(
            f"{item_path}: asset {name} is at {href}, not a local file; download the assets and point the Item's hrefs "
            f"at them (stack reads local files only)"
        )
    path = Path(href.removeprefix("file://"))
    return path if path.is_absolute() else (item_path.parent / path)


def _asset_key(assets: dict[str, Any], names: Sequence[str]) -> str | None:
    """The Item's asset named one of ``names``, by key or by its eo:bands common name / name."""
    for key in names:
        if key in assets:
            return key
    for key, asset in assets.items():
        for band in asset.get("eo:bands", []) or []:
            if band.get("common_name") in names or band.get("name") in names:
                return key
    return None


def _s2_offset_from_item(properties: dict[str, Any], asset: dict[str, Any]) -> tuple[float, float, str] | None:
    """(scale, offset, note) that make reflectance x 10,000 from the asset's DN, from the Item's records."""
    bands = asset.get("raster:bands") or []
    if bands and ("offset" in bands[0] or "scale" in bands[0]):
        scale, offset = float(bands[0].get("scale", 1.0)), float(bands[0].get("offset", 0.0))
        if scale == 1.0:  # stated in DN
            return 1.0, offset, f"raster:bands offset {offset:g} DN"
        # stated as reflectance = DN x scale + offset: x 10,000 for the Zindi scale
        return scale * QUANTIFICATION, offset * QUANTIFICATION, f"raster:bands scale {scale:g}, offset {offset:g}"
    baseline = properties.get("s2:processing_baseline")
    if baseline is not None:
        if float(baseline) >= 4.0:
            return 1.0, -1000.0, f"processing baseline {baseline}: BOA_ADD_OFFSET -1000"
        return 1.0, 0.0, f"processing baseline {baseline}: no offset"
    return None


def _stated_nodata(asset: dict[str, Any]) -> float | None:
    """The asset's ``raster:bands`` no-data value (catalogues state it there; the files often do not)."""
    value = next((b.get("nodata") for b in asset.get("raster:bands", []) or [] if "nodata" in b), None)
    if value is None or str(value).lower() == "nan":
        return None  # NaN is no-data in read_onto anyway
    return float(value)


def read_item(path: Path) -> Acquisition:
    """A STAC Item JSON: its sensor, date, orbit and local band files."""
    try:
        item = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} cannot be read ({exc}); give a STAC Item JSON, a SAFE folder") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}); give a STAC Item JSON") from None
    if not isinstance(item, dict) or item.get("type") != "Feature" or "assets" not in item:
        raise DataError(f"{path} is not a STAC Item (a GeoJSON Feature with assets); give the Item of each product")
    import pystac

    try:  # pystac reads and checks the Item
        parsed = pystac.Item.from_dict(item, preserve_dict=True)
    except Exception as exc:  # noqa: BLE001 - pystac raises many types for malformed Items
        raise DataError(f"{path} is not a readable STAC Item ({type(exc).__name__}: {exc}); give the Item as the catalogue serves it") from None
    props = parsed.properties
    sensor = _sensor(str(props.get("platform", ""))) or _sensor(str(props.get("constellation", "")))
    if sensor is None:
        raise DataError(
            f"{path}: platform {props.get('platform')!r} / constellation {props.get('constellation')!r} is neither "
            f"Sentinel-2 nor Sentinel-1; stack builds scenes from those two"
        )
    when = props.get("datetime") or props.get("start_datetime")
    try:
        date = dt.datetime.fromisoformat(str(when).replace("Z", "+00:00")).date()
    except ValueError:
        raise DataError(f"{path}: datetime {when!r} is not an ISO date-time; the Item needs its acquisition time") from None
    acquisition = Acquisition(path, parsed.id, sensor, date, None)
    assets = {key: asset.to_dict() for key, asset in parsed.assets.items()}
    if sensor == "sentinel-2":
        for band in (*OPTICAL, "scl"):
            key = _asset_key(assets, S2_ASSET_NAMES[band])
            if key is None:
                if band == "scl":
                    continue
                raise DataError(f"{path}: no {band} asset (looked for {', '.join(S2_ASSET_NAMES[band])}); the Item lacks a band")
            asset = Asset(_href(path, assets[key], key), nodata=_stated_nodata(assets[key]))
            if band != "scl":
                found = _s2_offset_from_item(props, assets[key])
                if found is not None:
                    asset.scale, asset.offset, asset.note = found
                else:  # decided once the file's own GDAL metadata is read
                    asset.offset_unstated = date >= BASELINE_OFFSET_FROM
            acquisition.assets[band] = asset
    else:
        orbit = str(props.get("sat:orbit_state", "")).lower()
        if orbit not in ORBITS:
            raise DataError(f"{path}: sat:orbit_state is {props.get('sat:orbit_state')!r}; a Sentinel-1 Item needs ascending or descending")
        acquisition.orbit = orbit
        for pol in SAR_POLARISATIONS:
            key = _asset_key(assets, (pol, pol.upper()))
            if key is None:
                raise DataError(f"{path}: no {pol} asset; a Sentinel-1 Item needs VV and VH backscatter")
            acquisition.assets[pol] = Asset(_href(path, assets[key], key), nodata=_stated_nodata(assets[key]))
            unit = next((str(b.get("unit", "")) for b in assets[key].get("raster:bands", []) or []), "")
            if unit.lower() in ("db", "decibel", "decibels"):
                acquisition.sar_db = True
    return acquisition


def _xml_text(root: ET.Element, tag: str) -> list[ET.Element]:
    return [el for el in root.iter() if el.tag.split("}")[-1] == tag]


def read_safe(folder: Path) -> Acquisition:
    """A Sentinel-2 SAFE folder: the metadata XML's date and offsets, the band files below GRANULE."""
    xml_files = sorted(folder.glob("MTD_MSIL*.xml"))
    if not xml_files:
        raise DataError(f"{folder} holds no MTD_MSIL2A.xml or MTD_MSIL1C.xml; give a Sentinel-2 SAFE folder as downloaded")
    try:
        root = ET.parse(xml_files[0]).getroot()
    except ET.ParseError as exc:
        raise DataError(f"{xml_files[0]} is not valid XML ({exc}); download the product again") from None
    start = next((el.text for el in _xml_text(root, "PRODUCT_START_TIME")), None)
    try:
        date = dt.datetime.fromisoformat(str(start).replace("Z", "+00:00")).date()
    except ValueError:
        raise DataError(f"{xml_files[0]}: PRODUCT_START_TIME {start!r} is not a date-time; download the product again") from None
    level = "L1C" if "L1C" in xml_files[0].name else "L2A"
    offset_tag = "RADIO_ADD_OFFSET" if level == "L1C" else "BOA_ADD_OFFSET"
    # band_id -> band name: the Spectral_Information list (bandId, physicalBand) says it for every band;
    # the query options' BAND_NAME list (older products) is in band_id order but omits B10 in L2A.
    names = {int(el.attrib["bandId"]): el.attrib["physicalBand"] for el in _xml_text(root, "Spectral_Information")
             if "bandId" in el.attrib and "physicalBand" in el.attrib}
    if not names:
        names = dict(enumerate(str(el.text) for el in _xml_text(root, "BAND_NAME")))
    offsets = {}
    for el in _xml_text(root, offset_tag):
        name = names.get(int(el.attrib.get("band_id", -1)))
        if name:
            offsets[name.upper()] = float(el.text or 0.0)
    # The JPEG 2000 band files declare no no-data value; the metadata's special values do (0 in every baseline).
    nodata = next(
        (float(index.text or 0) for special in _xml_text(root, "Special_Values")
         for text, index in zip(_xml_text(special, "SPECIAL_VALUE_TEXT"), _xml_text(special, "SPECIAL_VALUE_INDEX"))
         if (text.text or "").strip().upper() == "NODATA"),
        0.0,
    )
    acquisition = Acquisition(folder, folder.name.removesuffix(".SAFE"), "sentinel-2", date, None)
    for band, band_id in S2_BAND_IDS.items():
        files = sorted(folder.glob(f"GRANULE/*/IMG_DATA/R10m/*_{band_id}_10m.jp2")) or sorted(
            folder.glob(f"GRANULE/*/IMG_DATA/*_{band_id}.jp2")
        )
        if not files:
            raise DataError(f"{folder}: no {band_id} band file below GRANULE/*/IMG_DATA; the SAFE folder is incomplete")
        offset = offsets.get(band_id, offsets.get(band_id.replace("B0", "B"), 0.0))
        note = f"{offset_tag} {offset:g}" if offset else f"no {offset_tag} (baseline before 04.00)"
        acquisition.assets[band] = Asset(files[0], offset=offset, note=note, nodata=nodata)
    scl = sorted(folder.glob("GRANULE/*/IMG_DATA/R20m/*_SCL_20m.jp2"))
    if scl:
        acquisition.assets["scl"] = Asset(scl[0], nodata=0.0)  # SCL class 0: no data
    return acquisition


def read_input(path: Path) -> Acquisition:
    if path.is_dir():
        return read_safe(path)
    if not path.exists():
        raise DataError(f"{path} not found; give STAC Item JSON files or Sentinel-2 SAFE folders")
    if path.suffix.lower() in (".tif", ".tiff", ".jp2"):
        raise DataError(
            f"{path} is a raster file, which does not say what it is (sensor, date, orbit); give the STAC Item JSON that "
            f"lists it as an asset (its href), or the SAFE folder it came from"
        )
    return read_item(path)


# ----------------------------------------------------------------------------------------------
# One grid


@dataclass(frozen=True)
class Grid:
    crs: Any
    transform: Any
    width: int
    height: int

    def describe(self) -> dict[str, Any]:
        return {"crs": self.crs.to_string(), "transform": list(self.transform)[:6], "width": self.width, "height": self.height}


def target_grid(reference: Path, crs: str | None, resolution: float | None, bounds: Sequence[float] | None) -> Grid:
    """The reference band file's grid, or the one ``crs``/``resolution``/``bounds`` describe."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import from_origin
    from rasterio.warp import calculate_default_transform, transform_bounds

    with rasterio.open(reference) as src:
        src_crs, src_bounds, src_res, src_size = src.crs, src.bounds, src.res[0], (src.width, src.height)
        if src_crs is None:
            raise DataError(f"{reference} has no CRS; the reference Sentinel-2 band must be georeferenced")
        if crs is None and resolution is None and bounds is None:
            return Grid(src.crs, src.transform, src.width, src.height)
    try:
        dst_crs = CRS.from_user_input(crs) if crs else src_crs
    except Exception:  # noqa: BLE001 - rasterio raises CRSError subclasses and others
        raise ParamError(f"--crs {crs!r} is not a CRS rasterio knows; give one such as EPSG:32645") from None
    res = float(resolution) if resolution else None
    if bounds is not None:
        left, bottom, right, top = (float(b) for b in bounds)
        if not (right > left and top > bottom):
            raise ParamError(f"--bounds {' '.join(map(str, bounds))} must be LEFT BOTTOM RIGHT TOP with right > left, top > bottom")
    else:
        left, bottom, right, top = transform_bounds(src_crs, dst_crs, *src_bounds)
    if res is None:
        if dst_crs == src_crs:
            res = src_res
        else:
            transform, _, _ = calculate_default_transform(src_crs, dst_crs, *src_size, *src_bounds)
            res = transform.a
    if res <= 0:
        raise ParamError(f"--resolution {resolution} must be > 0 (in the CRS's units)")
    width, height = int(round((right - left) / res)), int(round((top - bottom) / res))
    if width < 1 or height < 1:
        raise ParamError(f"--bounds and --resolution {res:g} give an empty grid; widen the bounds")
    return Grid(dst_crs, from_origin(left, top, res, res), width, height)


def read_onto(asset: Asset, grid: Grid, *, nearest: bool = False) -> tuple[np.ndarray, str]:
    """The asset's first band on ``grid`` (float32, NaN where it has no data or does not reach), and what
    was applied to its numbers (its own GDAL scale/offset, then the asset's)."""
    import rasterio
    from rasterio.errors import RasterioIOError
    from rasterio.warp import Resampling, reproject

    from landslide_dvc.core.raster import DeclaredScaling

    try:
        src = rasterio.open(asset.path)
    except RasterioIOError:
        raise DataError(f"{asset.path} cannot be read as a raster; download the asset again") from None
    with src:
        if src.crs is None:
            raise DataError(f"{asset.path} has no CRS; stack needs georeferenced band files")
        declared = DeclaredScaling.of(src)
        values = src.read(1).astype(np.float32)  # exact for uint16 DN; the scene is float32
        values[src.read_masks(1) == 0] = np.nan  # nodata, masks and alpha as GDAL reports them
        if asset.nodata is not None:  # the product's own record of it, before any scaling
            values[values == np.float32(asset.nodata)] = np.nan
        first = DeclaredScaling(declared.scales[:1], declared.offsets[:1])
        note = ""
        if not first.is_identity:
            values = (values * first.scales[0] + first.offsets[0]).astype(np.float32)
            note = f"GDAL scale {first.scales[0]:g}, offset {first.offsets[0]:g}"
        out = np.full((grid.height, grid.width), np.nan, np.float32)
        reproject(
            values, out, src_transform=src.transform, src_crs=src.crs, src_nodata=np.nan,
            dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=np.nan,
            resampling=Resampling.nearest if nearest else Resampling.bilinear,
        )
    return out, note


# ----------------------------------------------------------------------------------------------
# The scene


@dataclass
class StackOptions:
    event_date: dt.date
    crs: str | None = None
    resolution: float | None = None
    bounds: Sequence[float] | None = None
    sar_units: str = "auto"  # auto (from metadata; linear power where none is stated), linear, db
    mask_scl: tuple[int, ...] = ()  # SCL classes that become no-data
    optical_scale: float = QUANTIFICATION  # the bundle's: 10,000 for reflectance x 10,000


def split_at_event(acquisitions: list[Acquisition], event: dt.date) -> None:
    for acquisition in acquisitions:
        if acquisition.date == event:
            raise DataError(
                f"{acquisition.source} was acquired on the event date {event}; whether it shows the landslides is unknown, "
                f"so leave it out or give the date the event happened"
            )
        acquisition.role = "pre" if acquisition.date < event else "post"


def optical_band(acquisition: Acquisition, band: str, grid: Grid, options: StackOptions, record: dict[str, Any]) -> np.ndarray:
    asset = acquisition.assets[band]
    values, declared = read_onto(asset, grid)
    if asset.offset_unstated and not declared:
        raise DataError(
            f"{acquisition.source}: a Sentinel-2 product of {acquisition.date} (processing baseline 04.00 or later) "
            f"states no offset for {band} (no raster:bands offset, s2:processing_baseline or GDAL offset); add "
            f"s2:processing_baseline to the Item, or raster:bands offset -1000 to its assets"
        )
    if declared:  # the file states its own scaling: the Item's record of the same offset is not applied twice
        record.setdefault("offsets_removed", {})[band] = declared
        reflectance_x10k = values
    else:
        record.setdefault("offsets_removed", {})[band] = asset.note or "none stated, none applied"
        reflectance_x10k = values * np.float32(asset.scale) + np.float32(asset.offset)
    return reflectance_x10k * np.float32(options.optical_scale / QUANTIFICATION)


def sar_band(acquisition: Acquisition, pol: str, grid: Grid, options: StackOptions, record: dict[str, Any]) -> np.ndarray:
    values, declared = read_onto(acquisition.assets[pol], grid)
    in_db = acquisition.sar_db if options.sar_units == "auto" else options.sar_units == "db"
    check_sar_units(values, in_db, acquisition.assets[pol].path)
    if in_db:
        record.setdefault("units", {})[pol] = "dB as given" + (f" ({declared})" if declared else "")
        return values
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10.0 * np.log10(values)
    db[~np.isfinite(db)] = np.nan  # zero or negative power: no backscatter measured
    record.setdefault("units", {})[pol] = "linear power -> dB (10 log10)" + (f" after {declared}" if declared else "")
    return db


def check_sar_units(values: np.ndarray, in_db: bool, path: Path) -> None:
    """Refuse backscatter whose range says the other unit: dB is mostly negative (about -30 to 5), linear
    power positive and mostly below 1."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return
    middle = float(np.median(finite))
    if not in_db and middle < 0:
        raise DataError(
            f"{path} is read as linear power but its values look like dB (median {middle:.1f}); pass --sar-units db "
            f"(or state the unit in the Item's raster:bands)"
        )
    if in_db and finite.min() >= 0 and middle < 1.5:
        raise DataError(
            f"{path} is read as dB but its values look like linear power (all >= 0, median {middle:.3f}); pass "
            f"--sar-units linear"
        )


def median(stack: list[np.ndarray]) -> np.ndarray:
    """The per-pixel median; NaN where any acquisition lacks the pixel (no-data where any input does not cover it)."""
    if len(stack) == 1:  # one acquisition: itself (NaN where it lacks the pixel already)
        return stack[0]
    cube = np.stack(stack)
    out = np.median(cube, axis=0)
    out[np.isnan(cube).any(axis=0)] = np.nan
    return out


def build_scene(acquisitions: list[Acquisition], options: StackOptions) -> tuple[np.ndarray, Grid, dict[str, Any]]:
    """The 12 bands (12, H, W) float32 in RAW_BANDS order, their grid and the provenance record."""
    split_at_event(acquisitions, options.event_date)
    s2_post = sorted((a for a in acquisitions if a.sensor == "sentinel-2" and a.role == "post"), key=lambda a: a.date)
    if not s2_post:
        raise DataError(f"no Sentinel-2 product after the event date {options.event_date}; the scene's optical bands are post-event")
    s1 = {(orbit, role): [a for a in acquisitions if a.sensor == "sentinel-1" and a.orbit == orbit and a.role == role]
          for orbit in ORBITS for role in ("pre", "post")}
    missing = [f"{orbit} {role}-event" for (orbit, role), found in s1.items() if not found]
    if missing:
        raise DataError(
            f"no Sentinel-1 acquisition {', '.join(missing)}; the scene needs VV and VH before and after "
            f"{options.event_date} from both orbit directions"
        )
    grid = target_grid(s2_post[0].assets["red"].path, options.crs, options.resolution, options.bounds)
    records: dict[str, dict[str, Any]] = {}

    def record_of(a: Acquisition) -> dict[str, Any]:
        """The input's provenance record, made (and its files hashed) on first use only."""
        key = str(a.source)
        if key not in records:
            records[key] = {
                "input": key, "product_id": a.product_id, "sensor": a.sensor, "date": a.date.isoformat(),
                "role": a.role, **({"orbit": a.orbit} if a.orbit else {}),
                "files": {name: {"path": str(asset.path), "sha256": file_sha256(asset.path)} for name, asset in a.assets.items()},
            }
        return records[key]

    bands: list[np.ndarray] = []
    masks = []
    for band in OPTICAL:
        bands.append(median([optical_band(a, band, grid, options, record_of(a)) for a in s2_post]))
    if options.mask_scl:
        for a in s2_post:
            if "scl" not in a.assets:
                raise DataError(f"{a.source} has no SCL layer, so --mask-scl cannot apply; drop --mask-scl or give the SCL asset")
            scl, _ = read_onto(a.assets["scl"], grid, nearest=True)
            masks.append(np.isin(scl, options.mask_scl))
            record_of(a)["scl_masked"] = [SCL_CLASSES.get(c, str(c)) for c in options.mask_scl]
    for orbit in ORBITS:
        post = {pol: median([sar_band(a, pol, grid, options, record_of(a)) for a in s1[(orbit, "post")]]) for pol in SAR_POLARISATIONS}
        pre = {pol: median([sar_band(a, pol, grid, options, record_of(a)) for a in s1[(orbit, "pre")]]) for pol in SAR_POLARISATIONS}
        bands += [post["vv"], post["vh"], post["vv"] - pre["vv"], post["vh"] - pre["vh"]]
    scene = np.stack(bands).astype(np.float32)
    scene[:, np.isnan(scene).any(axis=0)] = np.nan  # no-data where any input lacks coverage
    for mask in masks:
        scene[:, mask] = np.nan
    if not np.isfinite(scene[0]).any():
        raise DataError(
            f"the products do not overlap on the grid of {s2_post[0].source} (no pixel is covered by every input); "
            f"give products of the same area, or --bounds inside all of them"
        )
    provenance = {
        "event_date": options.event_date.isoformat(),
        "bands": list(RAW_BANDS),
        "optical": f"Sentinel-2 post-event ({len(s2_post)} product(s), median), reflectance x {options.optical_scale:g}, offsets removed",
        "sar": "Sentinel-1 VV/VH in dB; per orbit the post- and pre-event medians; Diff = post - pre",
        "grid": grid.describe(),
        "resampling": {"bands": "bilinear", "scl": "nearest"},
        "nodata": "NaN where any input does not cover the pixel" + (f" or SCL is one of {list(options.mask_scl)}" if options.mask_scl else ""),
        "inputs": [records[k] for k in sorted(records)],
    }
    return scene, grid, provenance


def provenance_path(out: Path) -> Path:
    return out.with_suffix(".provenance.json")


def item_path(out: Path) -> Path:
    from landslide_dvc.serve.stac import item_path as stac_item_path

    return stac_item_path(out)  # where predict looks for a scene's dates


def scene_item(out: Path, scene_file: Path, grid: Grid, provenance: dict[str, Any], acquisitions: list[Acquisition]) -> dict[str, Any]:
    """The scene's STAC Item (`serve.stac`'s helpers): footprint, dates, the proj/raster/file extensions, links to its inputs."""
    import pystac
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension

    from landslide_dvc.core.geo import footprint
    from landslide_dvc.serve.stac import add_file, add_projection, relative_href

    geometry, bbox = footprint(grid.crs, grid.transform, grid.height, grid.width)
    dates = sorted(a.date for a in acquisitions)
    post = min(a.date for a in acquisitions if a.role == "post")
    item = pystac.Item(
        id=out.stem, geometry=geometry, bbox=bbox,
        datetime=dt.datetime.combine(post, dt.time(), dt.timezone.utc),
        properties={
            "start_datetime": dt.datetime.combine(dates[0], dt.time(), dt.timezone.utc).isoformat().replace("+00:00", "Z"),
            "end_datetime": dt.datetime.combine(dates[-1], dt.time(), dt.timezone.utc).isoformat().replace("+00:00", "Z"),
            "landslide:event_date": provenance["event_date"],
            "description": "Zindi-band scene (Sentinel-2 Red, Green, Blue, NIR x 10,000; Sentinel-1 VV/VH and change, dB) "
            "built by landslide-dvc stack",
        },
    )
    asset = pystac.Asset(href=scene_file.name, media_type=pystac.MediaType.COG, roles=["data"], title="scene")
    item.add_asset("scene", asset)
    item.add_asset("provenance", pystac.Asset(href=provenance_path(out).name, media_type=pystac.MediaType.JSON, roles=["metadata"]))
    add_projection(item, grid.crs, grid.transform, grid.height, grid.width)
    RasterExtension.ext(asset, add_if_missing=True).bands = [
        RasterBand.create(data_type=DataType.FLOAT32, nodata="nan", unit="dB" if k >= 4 else None) for k in range(len(RAW_BANDS))
    ]
    asset.extra_fields["eo:bands"] = [{"name": name} for name in RAW_BANDS]
    add_file(asset, scene_file)
    for a in acquisitions:  # what the scene came from, relative to the scene's Item (a catalogue moves whole)
        if a.source.is_file():  # a STAC Item
            item.add_link(pystac.Link("derived_from", relative_href(a.source, item_path(out)), media_type=pystac.MediaType.JSON))
        else:  # a SAFE folder: its metadata XML
            metadata = sorted(a.source.glob("MTD_MSIL*.xml"))[0]
            item.add_link(pystac.Link("derived_from", relative_href(metadata, item_path(out)), media_type=pystac.MediaType.XML,
                                      title=a.product_id))
    return item.to_dict(include_self_link=False, transform_hrefs=False)


def write_scene(out: Path, scene: np.ndarray, grid: Grid, provenance: dict[str, Any], acquisitions: list[Acquisition]) -> None:
    """The scene GeoTIFF, its provenance JSON and its STAC Item, written together (atomically)."""
    from landslide_dvc.serve.maps import Georef, write_bands_cog

    tags = {"LANDSLIDE_STACK": f"built by landslide-dvc stack; provenance: {provenance_path(out).name}"}
    with atomic_paths(out, provenance_path(out), item_path(out)) as (tmp_scene, tmp_json, tmp_item):
        write_bands_cog(tmp_scene, list(zip(scene, RAW_BANDS)), Georef(grid.crs, grid.transform), tags)
        tmp_json.write_text(json.dumps(provenance, indent=2) + "\n")
        item = scene_item(out, tmp_scene, grid, provenance, acquisitions)
        item["assets"]["scene"]["href"] = out.name  # the file's final name (the checksum is of these bytes)
        tmp_item.write_text(json.dumps(item, indent=2) + "\n")


def check_outputs(out: Path, inputs: Sequence[Path]) -> None:
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise ParamError(f"--out {out} must be a .tif file (the scene GeoTIFF)")
    given = {p.resolve() for p in inputs}
    for target in (out, provenance_path(out), item_path(out)):
        if target.resolve() in given:
            raise ParamError(f"--out {out} would replace the input {target}; choose another --out")
        if target.exists():
            raise ParamError(f"{target} exists; stack never replaces a file, so remove it or choose another --out")
    ensure_output_folder(out.parent, "--out")  # before any work: a file in the way, a read-only folder


def run_stack(inputs: Sequence[Path], out: Path, options: StackOptions, bundle_kind: str | None = None, bundle_bands: Sequence[str] | None = None) -> str:
    """The command: check, read every input, build the scene, write it and its provenance; the summary line."""
    if bundle_kind == "segmentation":
        raise ParamError(
            "the segmentation (Landslide4Sense) bundle takes the release's rescaled bands, whose constants from digital numbers "
            "the release does not publish, so stack cannot build its scenes; give a classifier bundle"
        )
    if bundle_bands is not None and list(bundle_bands) != list(RAW_BANDS):
        raise ParamError(f"the bundle takes the bands {', '.join(bundle_bands)}; stack builds the Zindi bands {', '.join(RAW_BANDS)}")
    check_outputs(out, inputs)
    acquisitions = [read_input(Path(p)) for p in inputs]
    scene, grid, provenance = build_scene(acquisitions, options)
    write_scene(out, scene, grid, provenance, acquisitions)
    valid = float(np.isfinite(scene).all(axis=0).mean())
    counts = {role: sum(a.role == role for a in acquisitions) for role in ("pre", "post")}
    return (
        f"{len(acquisitions)} products ({counts['pre']} pre-event, {counts['post']} post-event) -> {out} "
        f"({grid.width} x {grid.height} px, {valid:.1%} valid), {provenance_path(out)}, {item_path(out)} (STAC Item)"
    )


__all__ = ["Acquisition", "Grid", "StackOptions", "build_scene", "read_input", "run_stack"]
