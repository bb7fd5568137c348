"""Download and normalise one data set."""

from kfp import dsl

from cnnvsmlp_components.image import UNPLACED


@dsl.component(base_image=UNPLACED, install_kfp_package=False)
def prepare_data(config_json: str, dataset: dsl.Output[dsl.Dataset]):
    """Write the config's data set, normalised, as docs/dataset-format.md describes."""
    from cnnvsmlp.config import parse_config_json
    from cnnvsmlp.data import prepare
    from cnnvsmlp.models import check_user_variants

    config = parse_config_json(config_json)
    meta = prepare(config.dataset, config.source, config.split, dataset.path, config.limit)
    # A user's function that builds no model for this data fails here, before any training.
    check_user_variants(config.variants, meta["image_shape"], len(meta["classes"]))
    dataset.metadata.update(
        {"dataset": meta["dataset"], "source": meta["source"], **meta["counts"]}
    )
