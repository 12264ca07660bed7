"""Not ITK. scripts/device-check puts this folder on the path of a GPU machine that has no ITK (its wheels are
81 MB, more than travels there), because MONAI Label's writer module imports ITK at its top although it writes
NIfTI without it. Any use of ITK fails here, naming why."""


def __getattr__(name: str):
    raise ImportError(f"itk.{name}: ITK is not installed on this machine (scripts/device-check does not carry it)")
