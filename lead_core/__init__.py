"""LEAD: Liberal Feature-based Distillation for Dense Retrieval (Sun et al., WSDM'24).

One library for every stage of the pipeline; the KFP components and the `lead` CLI are thin
wrappers over it. `lead_core` never imports kfp, and tracking is optional.
"""

__version__ = "0.1.0"
