"""boltzflow: neural samplers of Boltzmann densities, end to end.

The library behind the Snakemake workflow. Every stage of the workflow is a small script in
``workflow/scripts`` that calls one function of this package, so everything here can be used
and tested without Snakemake.
"""

__version__ = "0.1.0"
