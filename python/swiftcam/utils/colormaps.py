"""Colour lookup tables for heatmaps, computed without OpenCV or matplotlib.

Every table is a read-only ``(256, 3)`` uint8 array in **RGB** order; entry ``i`` colours the
value ``i / 255``. :func:`apply_colormap` indexes a table with uint8 values, exactly like
OpenCV's ``cv2.applyColorMap`` (which returns BGR; reverse the last axis to compare).

Available tables (:data:`COLORMAPS`):

``"jet"``
    OpenCV's ``COLORMAP_JET``, bit for bit. OpenCV defines it as the piecewise-linear GNU
    Octave jet (red ``4x - 1.5``, green ``4x - 0.5``, blue ``4x + 0.5`` rising, the mirror
    images falling, clipped to [0, 1]) sampled at 256 points, interpolated once more in float32
    by ``interp1`` and rounded half to even by ``convertTo``; :func:`_opencv_jet` replays those
    float32 steps. Without the replay one entry (blue at 159) would differ by one.
``"turbo"``
    Google's Turbo (A. Mikhailov, 2019, Apache-2.0), rounded to 8 bits.
``"viridis"``, ``"inferno"``
    The matplotlib colormaps of S. van der Walt and N. Smith (CC0), rounded to 8 bits.
``"gray"``
    The identity ramp.

The turbo, viridis and inferno tables are stored as hex strings; they equal both OpenCV's
``COLORMAP_TURBO``/``VIRIDIS``/``INFERNO`` and matplotlib's float tables rounded to 8 bits
(checked by ``python/tests/test_image.py`` where OpenCV is installed).
"""

import numpy as np

__all__ = ["COLORMAPS", "OPENCV_COLORMAP_IDS", "get_colormap", "apply_colormap"]

#: Names accepted by :func:`get_colormap`.
COLORMAPS = ("jet", "turbo", "viridis", "inferno", "gray")

#: OpenCV's ``cv2.COLORMAP_*`` constants for the tables swiftcam has, so code written for
#: pytorch-grad-cam (``colormap=cv2.COLORMAP_JET``) keeps working.
OPENCV_COLORMAP_IDS = {2: "jet", 14: "inferno", 16: "viridis", 20: "turbo"}

# Each table: 256 RGB triplets in hex (r0 g0 b0 r1 g1 b1 ...), 12 triplets per line.
_TURBO_HEX = (
    "30123b32154333184a341b51351e5836215f37246638276d392a733a2d793b2f803c3286"
    "3d358b3e38913f3b973f3e9c4040a24143a74146ac4249b1424bb5434eba4451bf4454c3"
    "4456c74559cb455ccf455ed34661d64664da4666dd4669e0466be3476ee64771e94773eb"
    "4776ee4778f0477bf2467df44680f64682f84685fa4687fb458afc458cfd448ffe4391fe"
    "4294ff4196ff4099ff3e9bfe3d9efe3ba0fd3aa3fc38a5fb37a8fa35abf833adf731aff5"
    "2fb2f42eb4f22cb7f02ab9ee28bceb27bee925c0e723c3e422c5e220c7df1fc9dd1ecbda"
    "1ccdd81bd0d51ad2d21ad4d019d5cd18d7ca18d9c818dbc518ddc218dec018e0bd19e2bb"
    "19e3b91ae4b61ce6b41de7b21fe9af20eaac22ebaa25eca727eea42aefa12cf09e2ff19b"
    "32f29835f39438f4913cf58e3ff68a43f78746f8844af8804ef97d52fa7a55fa7659fb73"
    "5dfc6f61fc6c65fd6969fd666dfe6271fe5f75fe5c79fe597dff5680ff5384ff5188ff4e"
    "8bff4b8fff4992ff4796fe4499fe429cfe409ffd3fa1fd3da4fc3ca7fc3aa9fb39acfb38"
    "affa37b1f936b4f836b7f735b9f635bcf534bef434c1f334c3f134c6f034c8ef34cbed34"
    "cdec34d0ea34d2e935d4e735d7e535d9e436dbe236dde037dfdf37e1dd37e3db38e5d938"
    "e7d739e9d539ebd339ecd13aeecf3aefcd3af1cb3af2c93af4c73af5c53af6c33af7c13a"
    "f8be39f9bc39faba39fbb838fbb637fcb336fcb136fdae35fdac34fea933fea732fea431"
    "fea130fe9e2ffe9b2dfe992cfe962bfe932afe9029fd8d27fd8a26fc8725fc8423fb8122"
    "fb7e21fa7b1ff9781ef9751df8721cf76f1af66c19f56918f46617f36315f26014f15d13"
    "f05b12ef5811ed5510ec530feb500eea4e0de84b0ce7490ce5470be4450ae2430ae14109"
    "df3f08dd3d08dc3b07da3907d83706d63506d43305d23105d02f05ce2d04cc2b04ca2a04"
    "c82803c52603c32503c12302be2102bc2002b91e02b71d02b41b01b21a01af1801ac1701"
    "a91601a71401a41301a112019e10019b0f01980e01950d01920b018e0a018b0902880802"
    "8507028106027e05027a0403"
)

_VIRIDIS_HEX = (
    "44015444025645045745055946075a46085c460a5d460b5e470d60470e61471063471164"
    "47136548146748166848176948186a481a6c481b6d481c6e481d6f481f70482071482173"
    "482374482475482576482677482878482979472a7a472c7a472d7b472e7c472f7d46307e"
    "46327e46337f463480453581453781453882443983443a83443b84433d84433e85423f85"
    "4240864241864142874144874045884046883f47883f48893e49893e4a893e4c8a3d4d8a"
    "3d4e8a3c4f8a3c508b3b518b3b528b3a538b3a548c39558c39568c38588c38598c375a8c"
    "375b8d365c8d365d8d355e8d355f8d34608d34618d33628d33638d32648e32658e31668e"
    "31678e31688e30698e306a8e2f6b8e2f6c8e2e6d8e2e6e8e2e6f8e2d708e2d718e2c718e"
    "2c728e2c738e2b748e2b758e2a768e2a778e2a788e29798e297a8e297b8e287c8e287d8e"
    "277e8e277f8e27808e26818e26828e26828e25838e25848e25858e24868e24878e23888e"
    "23898e238a8d228b8d228c8d228d8d218e8d218f8d21908d21918c20928c20928c20938c"
    "1f948c1f958b1f968b1f978b1f988b1f998a1f9a8a1e9b8a1e9c891e9d891f9e891f9f88"
    "1fa0881fa1881fa1871fa28720a38620a48621a58521a68522a78522a88423a98324aa83"
    "25ab8225ac8226ad8127ad8128ae8029af7f2ab07f2cb17e2db27d2eb37c2fb47c31b57b"
    "32b67a34b67935b77937b87838b9773aba763bbb753dbc743fbc7340bd7242be7144bf70"
    "46c06f48c16e4ac16d4cc26c4ec36b50c46a52c56954c56856c66758c7655ac8645cc863"
    "5ec96260ca6063cb5f65cb5e67cc5c69cd5b6ccd5a6ece5870cf5773d05675d05477d153"
    "7ad1517cd2507fd34e81d34d84d44b86d54989d5488bd6468ed64590d74393d74195d840"
    "98d83e9bd93c9dd93ba0da39a2da37a5db36a8db34aadc32addc30b0dd2fb2dd2db5de2b"
    "b8de29bade28bddf26c0df25c2df23c5e021c8e020cae11fcde11dd0e11cd2e21bd5e21a"
    "d8e219dae319dde318dfe318e2e418e5e419e7e419eae51aece51befe51cf1e51df4e61e"
    "f6e620f8e621fbe723fde725"
)

_INFERNO_HEX = (
    "00000401000501010601010802010a02020c02020e030210040312040314050417060419"
    "07051b08051d09061f0a07220b07240c08260d08290e092b10092d110a30120a32140b34"
    "150b37160b39180c3c190c3e1b0c411c0c431e0c451f0c48210c4a230c4c240c4f260c51"
    "280b53290b552b0b572d0b592f0a5b310a5c320a5e340a5f3609613809623909633b0964"
    "3d09653e0966400a67420a68440a68450a69470b6a490b6a4a0c6b4c0c6b4d0d6c4f0d6c"
    "510e6c520e6d540f6d550f6d57106e59106e5a116e5c126e5d126e5f136e61136e62146e"
    "64156e65156e67166e69166e6a176e6c186e6d186e6f196e71196e721a6e741a6e751b6e"
    "771c6d781c6d7a1d6d7c1d6d7d1e6d7f1e6c801f6c82206c84206b85216b87216b88226a"
    "8a226a8c23698d23698f24699025689225689326679526679727669827669a28659b2964"
    "9d29649f2a63a02a63a22b62a32c61a52c60a62d60a82e5fa92e5eab2f5ead305dae305c"
    "b0315bb1325ab3325ab43359b63458b73557b93556ba3655bc3754bd3853bf3952c03a51"
    "c13a50c33b4fc43c4ec63d4dc73e4cc83f4bca404acb4149cc4248ce4347cf4446d04545"
    "d24644d34743d44842d54a41d74b3fd84c3ed94d3dda4e3cdb503bdd513ade5238df5337"
    "e05536e15635e25734e35933e45a31e55c30e65d2fe75e2ee8602de9612bea632aeb6429"
    "eb6628ec6726ed6925ee6a24ef6c23ef6e21f06f20f1711ff1731df2741cf3761bf37819"
    "f47918f57b17f57d15f67e14f68013f78212f78410f8850ff8870ef8890cf98b0bf98c0a"
    "f98e09fa9008fa9207fa9407fb9606fb9706fb9906fb9b06fb9d07fc9f07fca108fca309"
    "fca50afca60cfca80dfcaa0ffcac11fcae12fcb014fcb216fcb418fbb61afbb81dfbba1f"
    "fbbc21fbbe23fac026fac228fac42afac62df9c72ff9c932f9cb35f8cd37f8cf3af7d13d"
    "f7d340f6d543f6d746f5d949f5db4cf4dd4ff4df53f4e156f3e35af3e55df2e661f2e865"
    "f2ea69f1ec6df1ed71f1ef75f1f179f2f27df2f482f3f586f3f68af4f88ef5f992f6fa96"
    "f8fb9af9fc9dfafda1fcffa4"
)

_HEX_TABLES = {"turbo": _TURBO_HEX, "viridis": _VIRIDIS_HEX, "inferno": _INFERNO_HEX}
_CACHE = {}


def _opencv_linspace(n):
    """OpenCV's ``linspace(0, 1, n)``: ``x0 + i * step`` in float32."""
    step = np.float32(1) / np.float32(n - 1)
    return np.arange(n, dtype=np.float32) * step


def _opencv_jet():
    """OpenCV's COLORMAP_JET as a (256, 3) uint8 RGB table.

    Replays OpenCV's steps: the 256 base values (float32 literals of the piecewise-linear jet),
    ``interp1`` from the breakpoints ``linspace(0, 1, 256)`` onto the same points (float32,
    so entry ``i`` becomes ``y[i-1] + (x[i]-x[i-1]) * (y[i]-y[i-1]) / (x[i]-x[i-1])``), then
    ``convertTo(CV_8U, 255)``: multiply in float32, round half to even, saturate.
    """
    x = np.arange(256, dtype=np.float64) / 255
    xs = _opencv_linspace(256)
    dx = xs[1:] - xs[:-1]
    channels = []
    for offset in (1.5, 0.5, -0.5):  # red, green, blue
        base = np.clip(np.minimum(4 * x - offset, 3 + offset - 4 * x), 0, 1).astype(np.float32)
        values = base.copy()
        values[1:] = base[:-1] + (dx * (base[1:] - base[:-1])) / dx
        scaled = np.rint(values * np.float32(255))
        channels.append(np.clip(scaled, 0, 255).astype(np.uint8))
    return np.stack(channels, axis=1)


def _from_hex(text):
    return np.frombuffer(bytes.fromhex(text), dtype=np.uint8).reshape(256, 3).copy()


def _build(name):
    if name == "jet":
        return _opencv_jet()
    if name == "gray":
        return np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    return _from_hex(_HEX_TABLES[name])


def _named_table(name):
    table = _CACHE.get(name)
    if table is None:
        table = _build(name)
        table.setflags(write=False)
        _CACHE[name] = table
    return table


def get_colormap(colormap="jet"):
    """Return a colour lookup table.

    Parameters
    ----------
    colormap : str, int or array_like
        A name from :data:`COLORMAPS` (case-insensitive), one of OpenCV's ``COLORMAP_*``
        constants listed in :data:`OPENCV_COLORMAP_IDS`, or a custom ``(256, 3)`` uint8 table
        in RGB order.

    Returns
    -------
    numpy.ndarray
        A read-only ``(256, 3)`` uint8 table in RGB order (a custom table is returned as a
        uint8 array of that shape).

    Raises
    ------
    ValueError
        Unknown name or id, or a custom table of the wrong shape or dtype.
    """
    if isinstance(colormap, str):
        name = colormap.strip().lower()
        if name == "grey":
            name = "gray"
        if name not in COLORMAPS:
            raise ValueError(f"unknown colormap {colormap!r}; choose one of "
                             f"{', '.join(COLORMAPS)} or pass a (256, 3) uint8 RGB table")
        return _named_table(name)
    if isinstance(colormap, (int, np.integer)) and not isinstance(colormap, bool):
        name = OPENCV_COLORMAP_IDS.get(int(colormap))
        if name is None:
            known = ", ".join(f"{k} ({v})" for k, v in sorted(OPENCV_COLORMAP_IDS.items()))
            raise ValueError(f"OpenCV colormap id {colormap} is not available in swiftcam; "
                             f"known ids: {known}; or pass a (256, 3) uint8 RGB table")
        return _named_table(name)
    table = np.asarray(colormap)
    if table.shape != (256, 3) or table.dtype != np.uint8:
        raise ValueError(f"a custom colormap must be a (256, 3) uint8 RGB table, got shape "
                         f"{table.shape} and dtype {table.dtype}")
    return table


def apply_colormap(values, colormap="jet"):
    """Colour uint8 values with a lookup table, like ``cv2.applyColorMap`` but in RGB.

    Parameters
    ----------
    values : numpy.ndarray of uint8
        Any shape, typically ``(H, W)``.
    colormap : str, int or array_like
        See :func:`get_colormap`.

    Returns
    -------
    numpy.ndarray
        uint8, shape ``values.shape + (3,)``, RGB.
    """
    values = np.asarray(values)
    if values.dtype != np.uint8:
        raise TypeError(f"apply_colormap expects uint8 values, got {values.dtype}; convert "
                        "with np.uint8(255 * mask) for a mask in [0, 1]")
    return get_colormap(colormap)[values]
