"""The stand-in scene rendered as the product files a user downloads, for `landslide-dvc stack`.

The Zindi scene (`synthetic_scene`) holds the 12 bands as the archive stores them. A user has
products instead, and this module writes the same ground as those products, so that the demo
builds its mapped scene the way a user does (the ``synthesize_products`` and ``stack_scene``
stages):

- **Sentinel-2 L2A**, a SAFE-like folder: ``MTD_MSIL2A.xml`` (start time, processing baseline,
  quantification value 10,000, ``BOA_ADD_OFFSET`` -1000 per band from baseline 04.00 on, the
  no-data special value 0) and the band files below ``GRANULE/<granule>/IMG_DATA``: B02, B03,
  B04, B08 at 10 m and B02, B03, B04 and the scene classification (SCL) at 20 m, as lossless
  JPEG 2000 of uint16 digital numbers. DN = reflectance x 10,000 - offset, at least 1 (0 is no
  data), so a product of baseline 04.00 or later reads 1,000 higher than the archive.
- **Sentinel-1 RTC**, per acquisition a GeoTIFF of VV and one of VH, gamma0 in linear power
  (float32, no-data 0), as ASF or Planetary Computer serve them: one acquisition before and one
  after the event from each orbit direction. Post-event power is the archive's post-event dB;
  pre-event power is post minus the archive's Diff, so that stack's Diff = post - pre gives the
  archive's Diff back.
- **STAC Items** with relative hrefs: one per Sentinel-1 acquisition (``platform``,
  ``sat:orbit_state``, ``datetime``, assets ``vv``/``vh``) and one for the Sentinel-2 product in
  Earth Search's style (assets by common name, ``raster:bands`` scale 0.0001 and offset -0.1).

The SCL layer is the stand-in's own classification of its bands (no data, cloud, water,
vegetation, not vegetated), not Sen2Cor's; stack uses it only where ``--mask-scl`` asks.
"""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landslide_dvc.core.geo import Georef, footprint
from landslide_dvc.core.params import params_section, require

S2_BAND_IDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")  # band_id order
OPTICAL_FILES = (("B04", "red"), ("B03", "green"), ("B02", "blue"), ("B08", "nir"))  # the scene's bands 0..3
QUANTIFICATION = 10000
OFFSET_FROM_BASELINE = 4.0  # processing baseline 04.00 (25 January 2022): BOA_ADD_OFFSET -1000
S1_NODATA = 0.0
# (orbit, role): days from the event. Sentinel-1's 12-day repeat, the two orbits a few days apart.
S1_DAYS = {("descending", "pre"): -12, ("ascending", "pre"): -7, ("descending", "post"): 12, ("ascending", "post"): 5}
S2_DAYS_AFTER = 3
TILE = "45RUL"


@params_section
class ProductsParams:
    """The ``products:`` section (params.yaml): the dates and the Sentinel-2 processing baseline."""

    event_date: str  # YYYY-MM-DD: the landslides happened between the pre- and post-event acquisitions
    processing_baseline: str  # the Sentinel-2 product's, e.g. "05.10" (offset -1000) or "02.14" (none)

    def validate(self) -> None:
        try:
            dt.date.fromisoformat(self.event_date)
            is_date = True
        except ValueError:
            is_date = False
        require(is_date, f"products.event_date={self.event_date!r} must be a date YYYY-MM-DD")
        try:
            baseline = float(self.processing_baseline)
        except ValueError:
            baseline = -1.0
        require(0.0 < baseline < 100.0,
                f"products.processing_baseline={self.processing_baseline!r} must be a baseline such as '05.10' (a quoted number)")

    @property
    def event(self) -> dt.date:
        return dt.date.fromisoformat(self.event_date)

    @property
    def offset(self) -> int:
        """BOA_ADD_OFFSET of the baseline: -1000 from 04.00 on, else 0."""
        return -1000 if float(self.processing_baseline) >= OFFSET_FROM_BASELINE else 0


@dataclass(frozen=True)
class RenderedProducts:
    """What was written: the inputs a user passes to stack (the SAFE folder and the Sentinel-1
    Items), and the Sentinel-2 product's Item (the same band files, as a catalogue serves them)."""

    safe: Path
    s1_items: list[Path]
    s2_item: Path

    @property
    def stack_inputs(self) -> list[Path]:
        return [self.safe, *self.s1_items]


def _timestamp(day: dt.date, hour: int, minute: int) -> str:
    return f"{day:%Y%m%d}T{hour:02d}{minute:02d}00"


def _iso(day: dt.date, hour: int, minute: int) -> str:
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}:00Z"


def s2_digital_numbers(archive_dn: np.ndarray, valid: np.ndarray, offset: int) -> np.ndarray:
    """uint16 DN of a product: the archive's reflectance x 10,000 minus the baseline's offset, at least
    1 (the processor keeps 0 for no data) and at most 65,534 (65,535 is saturation); 0 outside ``valid``."""
    dn = np.clip(np.rint(archive_dn.astype(np.float64) - offset), 1, 65534)
    return np.where(valid, dn, 0).astype(np.uint16)


def scene_classification(optical: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The stand-in's SCL classes from its reflectance x 10,000 (red, green, blue, nir): 0 no data,
    9 cloud (bright in every visible band), 6 water (dark NIR), 4 vegetation (NDVI > 0.3), 5 not vegetated."""
    red, green, blue, nir = (band.astype(np.float64) for band in optical)
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (nir - red) / (nir + red)
    scl = np.full(red.shape, 5, np.uint8)
    scl[ndvi > 0.3] = 4
    scl[nir < 800] = 6
    scl[(red > 3500) & (green > 3500) & (blue > 3500)] = 9
    scl[~valid] = 0
    return scl


def _write_raster(path: Path, values: np.ndarray, georef: Georef, **profile: Any) -> None:
    import rasterio

    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = values.shape
    with rasterio.open(path, "w", width=width, height=height, count=1, dtype=values.dtype, crs=georef.crs,
                       transform=georef.transform, **profile) as dst:
        dst.write(values, 1)


def _write_jp2(path: Path, dn: np.ndarray, georef: Georef) -> None:
    """Lossless JPEG 2000, as the products' band files are; the no-data value lives in the metadata XML."""
    _write_raster(path, dn, georef, driver="JP2OpenJPEG", QUALITY="100", REVERSIBLE="YES", YCBCR420="NO")


def _aggregate_20m(values: np.ndarray, *, classes: bool) -> np.ndarray:
    """The 20 m version of a 10 m band: the rounded mean of each 2 x 2 block (classes: the block's first pixel)."""
    height, width = (values.shape[0] // 2) * 2, (values.shape[1] // 2) * 2
    blocks = values[:height, :width].reshape(height // 2, 2, width // 2, 2)
    if classes:
        return np.ascontiguousarray(blocks[:, 0, :, 0])
    return np.rint(blocks.astype(np.float64).mean(axis=(1, 3))).astype(values.dtype)


def _georef_20m(georef: Georef) -> Georef:
    from affine import Affine

    t = georef.transform
    return Georef(georef.crs, Affine(t.a * 2, t.b, t.c, t.d, t.e * 2, t.f))


def _mtd_xml(product_uri: str, start: str, baseline: str, offset: int) -> bytes:
    """MTD_MSIL2A.xml with what stack reads and a reader of real products expects in the same places."""
    root = ET.Element("n1:Level-2A_User_Product", {
        "xmlns:n1": "https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd",
    })
    general = ET.SubElement(root, "n1:General_Info")
    info = ET.SubElement(general, "Product_Info")
    for tag, text in (("PRODUCT_START_TIME", start), ("PRODUCT_STOP_TIME", start), ("PRODUCT_URI", product_uri),
                      ("PROCESSING_LEVEL", "Level-2A"), ("PRODUCT_TYPE", "S2MSI2A"), ("PROCESSING_BASELINE", baseline)):
        ET.SubElement(info, tag).text = text
    bands = ET.SubElement(ET.SubElement(info, "Query_Options"), "Band_List")
    for name in S2_BAND_IDS:
        if name != "B10":  # L2A has no cirrus band
            ET.SubElement(bands, "BAND_NAME").text = name
    image = ET.SubElement(general, "Product_Image_Characteristics")
    for text, index in (("NODATA", 0), ("SATURATED", 65535)):
        special = ET.SubElement(image, "Special_Values")
        ET.SubElement(special, "SPECIAL_VALUE_TEXT").text = text
        ET.SubElement(special, "SPECIAL_VALUE_INDEX").text = str(index)
    quantification = ET.SubElement(image, "QUANTIFICATION_VALUES_LIST")
    ET.SubElement(quantification, "BOA_QUANTIFICATION_VALUE", {"unit": "none"}).text = str(QUANTIFICATION)
    if offset:  # baseline 04.00 and later only
        offsets = ET.SubElement(image, "BOA_ADD_OFFSET_VALUES_LIST")
        for band_id in range(len(S2_BAND_IDS)):
            ET.SubElement(offsets, "BOA_ADD_OFFSET", {"band_id": str(band_id)}).text = str(offset)
    spectral = ET.SubElement(image, "Spectral_Information_List")
    for band_id, name in enumerate(S2_BAND_IDS):
        ET.SubElement(spectral, "Spectral_Information", {"bandId": str(band_id), "physicalBand": name})
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root) + b"\n"


def _item(item_id: str, when: str, georef: Georef, shape: tuple[int, int], properties: dict[str, Any],
          assets: dict[str, Any]) -> dict[str, Any]:
    geometry, bbox = footprint(georef.crs, georef.transform, *shape)
    return {
        "type": "Feature", "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
        ],
        "id": item_id, "geometry": geometry, "bbox": bbox,
        "properties": {"datetime": when, "proj:epsg": int(georef.crs.to_epsg()), **properties},
        "links": [], "assets": assets,
    }


def write_s2_product(folder: Path, optical: np.ndarray, valid: np.ndarray, georef: Georef, params: ProductsParams) -> tuple[Path, Path]:
    """The Sentinel-2 L2A SAFE folder and its Earth-Search-style Item; returns (SAFE folder, Item)."""
    day = params.event + dt.timedelta(days=S2_DAYS_AFTER)
    sensing = _timestamp(day, 4, 55)
    baseline = params.processing_baseline
    name = f"S2B_MSIL2A_{sensing}_N{baseline.replace('.', '')}_R119_T{TILE}_{_timestamp(day, 7, 10)}"
    safe = folder / f"{name}.SAFE"
    granule = safe / "GRANULE" / f"L2A_T{TILE}_A000000_{sensing}" / "IMG_DATA"
    dns = {band: s2_digital_numbers(optical[k], valid, params.offset) for k, (band, _) in enumerate(OPTICAL_FILES)}
    files_10m = {}
    for band, dn in dns.items():
        files_10m[band] = granule / "R10m" / f"T{TILE}_{sensing}_{band}_10m.jp2"
        _write_jp2(files_10m[band], dn, georef)
    georef_20m = _georef_20m(georef)
    for band in ("B02", "B03", "B04"):
        _write_jp2(granule / "R20m" / f"T{TILE}_{sensing}_{band}_20m.jp2", _aggregate_20m(dns[band], classes=False), georef_20m)
    scl_file = granule / "R20m" / f"T{TILE}_{sensing}_SCL_20m.jp2"
    _write_jp2(scl_file, _aggregate_20m(scene_classification(optical, valid), classes=True), georef_20m)
    (safe / "MTD_MSIL2A.xml").write_bytes(_mtd_xml(f"{name}.SAFE", _iso(day, 4, 55)[:-1] + ".024Z", baseline, params.offset))

    def asset(path: Path, common: str | None, scale: bool, res: float) -> dict[str, Any]:
        band: dict[str, Any] = {"nodata": 0, "data_type": "uint16", "spatial_resolution": res}
        if scale:  # Earth Search states reflectance = DN x 0.0001 + offset
            band.update(scale=1.0 / QUANTIFICATION, offset=params.offset / QUANTIFICATION)
        record: dict[str, Any] = {"href": path.relative_to(folder).as_posix(), "type": "image/jp2", "roles": ["data"],
                                  "raster:bands": [band]}
        if common:
            record["eo:bands"] = [{"name": path.stem.split("_")[-2], "common_name": common}]
        return record

    assets = {common: asset(files_10m[band], common, True, 10.0) for band, common in OPTICAL_FILES}
    assets["scl"] = asset(scl_file, None, False, 20.0)
    item = _item(name, _iso(day, 4, 55), georef, optical.shape[1:], {
        "platform": "sentinel-2b", "constellation": "sentinel-2", "instruments": ["msi"],
        "s2:processing_baseline": baseline, "s2:product_type": "S2MSI2A", "s2:mgrs_tile": TILE,
    }, assets)
    item_file = folder / f"{name}.json"
    item_file.write_text(json.dumps(item, indent=2) + "\n")
    return safe, item_file


def write_s1_acquisition(folder: Path, orbit: str, role: str, vv_db: np.ndarray, vh_db: np.ndarray, valid: np.ndarray,
                         georef: Georef, params: ProductsParams) -> Path:
    """One RTC acquisition: VV and VH gamma0 in linear power (float32, 0 no data) and its Item; returns the Item."""
    day = params.event + dt.timedelta(days=S1_DAYS[(orbit, role)])
    hour = 0 if orbit == "descending" else 12
    name = f"S1A_IW_{_timestamp(day, hour, 15)}_DVP_RTC10_G_gpuned_{'D' if orbit == 'descending' else 'A'}{role.upper()}"
    assets = {}
    for pol, db in (("vv", vv_db), ("vh", vh_db)):
        power = np.power(np.float64(10.0), db.astype(np.float64) / 10.0).astype(np.float32)
        power[~valid] = S1_NODATA
        path = folder / f"{name}_{pol.upper()}.tif"
        _write_raster(path, power, georef, driver="GTiff", nodata=S1_NODATA, compress="deflate", predictor=3,
                      tiled=True, blockxsize=256, blockysize=256)
        assets[pol] = {"href": path.name, "type": "image/tiff; application=geotiff", "roles": ["data"],
                       "title": f"{pol.upper()}: gamma0 terrain-corrected backscatter (linear power)",
                       "raster:bands": [{"nodata": S1_NODATA, "data_type": "float32", "spatial_resolution": 10.0}]}
    item = _item(name, _iso(day, hour, 15), georef, vv_db.shape, {
        "platform": "sentinel-1a", "constellation": "sentinel-1", "instruments": ["c-sar"],
        "sar:instrument_mode": "IW", "sar:polarizations": ["VV", "VH"], "sar:product_type": "RTC",
        "sat:orbit_state": orbit,
    }, assets)
    item_file = folder / f"{name}.json"
    item_file.write_text(json.dumps(item, indent=2) + "\n")
    return item_file


def render_products(folder: Path, bands: np.ndarray, valid: np.ndarray, georef: Georef, params: ProductsParams) -> RenderedProducts:
    """Write the scene ``bands`` (12, H, W; the archive's Zindi values) into ``folder`` (existing) as products."""
    safe, s2_item = write_s2_product(folder, bands[:4], valid, georef, params)
    s1_items = []
    for first, orbit in ((4, "descending"), (8, "ascending")):  # VV, VH, Diff VV, Diff VH of each orbit
        post_vv, post_vh, diff_vv, diff_vh = (bands[first + k].astype(np.float64) for k in range(4))
        for role, (vv, vh) in (("pre", (post_vv - diff_vv, post_vh - diff_vh)), ("post", (post_vv, post_vh))):
            s1_items.append(write_s1_acquisition(folder, orbit, role, vv, vh, valid, georef, params))
    return RenderedProducts(safe, s1_items, s2_item)


__all__ = ["ProductsParams", "RenderedProducts", "render_products", "s2_digital_numbers", "scene_classification"]
