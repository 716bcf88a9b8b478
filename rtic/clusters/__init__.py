"""From firm labels to innovation clusters: sector specialisation by area, spatial clusters of same-sector firms,
collaboration communities, and the four cluster types of the UK Innovation Clusters Map.

Stages (one module each): `inputs` (labels + register + postcode lookup → located firms), `specialisation`
(location quotients by area), `spatial` (density clusters in British National Grid metres), `communities`
(co-participation network in funded projects), `typology` (Diverse / Specialised / R&D Collaborating / Dispersed),
`report` (PNG maps and one HTML page).
"""
