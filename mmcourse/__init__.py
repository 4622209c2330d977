"""mmcourse: multimodal deep learning from scratch, and the optimized modules that follow.

The notebooks build every piece by hand; this package holds what they share and the fast,
GPU-ready versions they swap in:

- ``mmcourse.runtime``  seeding, device choice, quiet progress bars under CI
- ``mmcourse.data``     the embedded tri-modal spoken-digit data set, AV-MNIST
- ``mmcourse.nn``       attention, encoders, fusion, contrastive loss
- ``mmcourse.train``    the trainer
- ``mmcourse.check``    exercise checkers
- ``mmcourse.judge``    judging generated images: recognized, diverse, not copied
- ``mmcourse.viz``      the plots the chapters share
- ``mmcourse.bench``    scratch vs optimized timings
- ``mmcourse.course``   the repository's address, the chapter list, where the notebooks are
- ``mmcourse.exercises`` learner copies; ``mmcourse.colab`` the Colab install cell
- ``mmcourse.book``     the course as a static site; ``mmcourse.workshop``, ``mmcourse.room``
  workshop plans and a room's doctor reports
"""

from mmcourse.runtime import pick_device, seed_everything, setup

__version__ = "0.1.0"
__all__ = ["__version__", "pick_device", "seed_everything", "setup"]
